"""Robustness: corruptions of LiDAR scans (Robo3D's eight at three severities; Dong et al.'s
object-level and alignment corruptions at five), adversarial point attacks and the
robustness scores (Robo3D's mCE / mRR). See ``docs/robustness.md``.

Nothing is imported here: ``lidarcl.robustness.corruptions`` registers the corruption
transforms when imported (:func:`lidarcl.utils.setup_env.register_all_modules` does).
"""
