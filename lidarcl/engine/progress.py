"""Compact terminal output for pretraining: a progress line instead of mmengine's stream.

mmengine's Runner logs everything (environment, config, hook table, one line per
``LoggerHook`` interval) both to ``<work_dir>/<timestamp>/<timestamp>.log`` and to the
terminal. In the *compact* terminal mode (the default of ``tools/pretrain.py``,
``tools/demo.py`` and ``tools/study.py``; ``--verbose`` restores mmengine's stream):

- :class:`CompactTerminalRunner` builds the Runner's logger as mmengine does, then raises
  the level of its terminal handler to WARNING. The log file keeps every record at the
  configured ``log_level``; warnings and errors still reach the terminal.
- :class:`TerminalProgressHook` (``default_hooks.progress`` of
  ``configs/_base_/default_runtime.py``) prints one line naming the run and its log file,
  then the iteration, the loss and an ETA measured from the iteration times: rewritten in
  place with ``\\r`` on a TTY, or one line every ``interval`` iterations otherwise (CI logs
  stay short); :func:`lidarcl.engine.run_pretraining` then prints where the backbone went.

The mode is process-wide (:func:`set_terminal_output`), so that callers that build their
own configs (``lidarcl.evaluation.study.run_study``) follow the tool's flag; the library
default is ``"verbose"``, mmengine's own behaviour.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner import Runner

from lidarcl.registry import HOOKS

__all__ = ["TerminalProgressHook", "CompactTerminalRunner", "set_terminal_output",
           "terminal_output", "terminal_print", "end_progress_line", "log_file_of",
           "format_duration"]

_MODES = ("compact", "verbose")
_STATE = {"mode": "verbose"}


# Deprecation notices of the libraries underneath that a user cannot act on, kept off the
# terminal in the compact mode (mmengine's record stays in the log file): spconv's 16-line
# `torch.cuda.amp.custom_fwd` FutureWarnings at import, torch's once-per-process fx notice,
# and the "FileClient" / "HardDiskBackend" notices of mmengine's own CheckpointHook.
_NOISE_WARNINGS = [(FutureWarning, r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is "
                                   r"deprecated")]
_NOISE_LOGGERS = {"torch.fx._symbolic_trace": "is_fx_tracing will return true"}
_NOISE_RECORDS = ('"HardDiskBackend" is the alias of "LocalBackend"',
                  '"FileClient" will be deprecated in future')


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it
            return True
        return not any(message.startswith(start) for start in self.starts)


def set_terminal_output(mode: str) -> str:
    """``"compact"`` (progress line, warnings, results) or ``"verbose"`` (mmengine's full
    stream) for every following :func:`lidarcl.engine.run_pretraining` of this process;
    returns the previous mode (a tool's ``main`` restores it, for callers in-process).

    ``"compact"`` also hides a few deprecation notices of spconv, torch and mmengine (see
    ``_NOISE_*``); call it before ``register_all_modules`` (which imports spconv)."""
    import warnings

    if mode not in _MODES:
        raise ValueError(f"terminal output must be one of {_MODES}, got {mode!r}")
    previous, _STATE["mode"] = _STATE["mode"], mode
    if mode == "compact":
        for category, message in _NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for name, start in _NOISE_LOGGERS.items():
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropMessages) for f in logger.filters):
                logger.addFilter(_DropMessages(start))
    return previous


def terminal_output() -> str:
    return _STATE["mode"]


class _ProgressLine:
    """The unfinished ``\\r`` line on a stream, if any, so that whatever is printed next
    starts on a line of its own."""

    def __init__(self):
        self.stream = None
        self.width = 0

    def update(self, stream, text: str) -> None:
        if self.stream is not None and self.stream is not stream:
            self.end()
        stream.write("\r" + text + " " * max(0, self.width - len(text)))
        stream.flush()
        self.stream, self.width = stream, len(text)

    def end(self) -> None:
        if self.stream is not None:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream
                pass
        self.stream, self.width = None, 0


_LINE = _ProgressLine()


def end_progress_line() -> None:
    """Finish an in-place progress line (before a traceback, a warning or a result)."""
    _LINE.end()


def terminal_print(text: str, stream=None) -> None:
    """Print a line on the terminal after finishing any in-place progress line."""
    _LINE.end()
    print(text, file=stream or sys.stdout, flush=True)


class _TerminalFilter(_DropMessages):
    """On the Runner's terminal handler: a record that passes its level, unless it is a
    known notice (``_NOISE_RECORDS``), starts on a line of its own."""

    def __init__(self):
        super().__init__(*_NOISE_RECORDS)

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        _LINE.end()
        return True


def _terminal_handlers(logger: logging.Logger):
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler)
            and getattr(h, "stream", None) in (sys.stdout, sys.stderr)]


def log_file_of(logger: logging.Logger) -> str | None:
    """The file a (MM)Logger writes to, if any."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


class CompactTerminalRunner(Runner):
    """mmengine's Runner whose logger shows only warnings and errors on the terminal; the
    log file in the work dir keeps every record (module doc)."""

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in _terminal_handlers(logger):
            if handler.level < logging.WARNING:
                handler.setLevel(logging.WARNING)
            if not any(isinstance(f, _TerminalFilter) for f in handler.filters):
                handler.addFilter(_TerminalFilter())
        return logger


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours
            else f"{rest // 60}:{rest % 60:02d}")


@HOOKS.register_module()
class TerminalProgressHook(Hook):
    """Pretraining progress on the terminal: iteration, loss and ETA (module doc).

    Args:
        interval: iterations between two lines when the stream is not a TTY; None: about
            ten lines per run. A TTY is updated every iteration.
        window: iteration times averaged for the ETA (the first iteration, which warms
            up, is left out once there are others).
        tty: force in-place updates (True) or lines (False); None asks the stream.
        stream: where to write; None is ``sys.stdout`` at the time of writing.
    """

    priority = "LOW"  # after the IterTimerHook and LoggerHook of the same iteration

    def __init__(self, interval: int | None = None, window: int = 20,
                 tty: bool | None = None, stream=None):
        if interval is not None and int(interval) < 1:
            raise ValueError(f"TerminalProgressHook: interval must be >= 1, got {interval}")
        self.interval = None if interval is None else int(interval)
        self.window = max(1, int(window))
        self.tty = tty
        self.stream = stream
        self.times: deque = deque(maxlen=self.window)
        self.first_time = None
        self.last = None
        self.start = None
        self.loss = None

    # ------------------------------------------------------------------ helpers
    def _stream(self):
        return self.stream if self.stream is not None else sys.stdout

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return bool(self.tty)
        isatty = getattr(self._stream(), "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):
            return False

    def _every(self, runner) -> int:
        if self.interval is not None:
            return self.interval
        return max(1, math.ceil(runner.max_iters / 10))

    def seconds_per_iter(self) -> float | None:
        if self.times:
            return sum(self.times) / len(self.times)
        return self.first_time

    def eta(self, runner) -> float | None:
        per_iter = self.seconds_per_iter()
        if per_iter is None:
            return None
        return per_iter * max(0, runner.max_iters - runner.iter - 1)

    # ------------------------------------------------------------------ hook points
    def before_train(self, runner) -> None:
        self.times.clear()
        self.first_time = self.loss = None
        self.start = self.last = time.perf_counter()
        if not is_main_process():
            return
        model = runner.cfg.get("model", {}) if runner.cfg is not None else {}
        name = model.get("type", type(runner.model).__name__)
        backbone = (model.get("backbone") or {}).get("type")
        what = f"{name} x {backbone}" if backbone else name
        begin = f" from iteration {runner.iter}" if runner.iter else ""
        log = log_file_of(runner.logger)
        # a model names its kind of training (Segmentor: "fine-tuning"); pretrainers don't
        verb = getattr(getattr(runner.model, "module", runner.model), "progress_verb",
                       "pretraining")
        terminal_print(f"{verb} {what} for {runner.max_iters} iterations{begin} in "
                       f"{runner.work_dir}" + (f"; full log: {log}" if log else ""),
                       self._stream())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        now = time.perf_counter()
        spent, self.last = now - self.last, now
        if self.first_time is None:
            self.first_time = spent   # data loading, allocations: not in the ETA later
        else:
            self.times.append(spent)
        loss = (outputs or {}).get("loss") if isinstance(outputs, dict) else None
        if loss is not None:
            try:
                self.loss = float(loss.detach() if hasattr(loss, "detach") else loss)
            except (TypeError, ValueError):
                self.loss = None
        if not is_main_process():
            return
        done = runner.iter + 1
        tty = self._is_tty()
        if not tty and not (done == 1 or done % self._every(runner) == 0
                            or done == runner.max_iters):
            return
        text = self.progress_text(runner, done)
        if tty:
            _LINE.update(self._stream(), text)
        else:
            terminal_print(text, self._stream())

    def progress_text(self, runner, done: int) -> str:
        width = len(str(runner.max_iters))
        parts = [f"  iter {done:>{width}}/{runner.max_iters}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        per_iter = self.seconds_per_iter()
        if per_iter is not None:
            parts.append(f"{per_iter:.2f} s/iter")
        eta = self.eta(runner)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return "  ".join(parts)

    def after_train(self, runner) -> None:
        _LINE.end()  # the caller prints the result (run_pretraining: backbone.pth)
