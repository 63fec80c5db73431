"""The trainer's console sorted for people: start-up phases, known-harmless warnings (counted), and the
real warnings and errors (shown, each whole).

A 20-step run of the tiny recipe prints about 1,460 lines (verl's resolved config alone is 900;
measured on verl 0.9.1, vLLM's CPU build 0.32, Ray 2.60, TransferQueue 0.1.11), 240 of them
warnings, and none of those says anything about the run: TransferQueue caps its threads at the
CPU count ~200 times, verl names five optional engines it lacks in every worker, vLLM's CPU build
explains its settings. ``train.log`` keeps every byte; the view shows what is left after
:data:`KNOWN_HARMLESS`: a warning once, however many workers print it, and an error with all its
lines (a traceback is gathered per process, Ray prefixing each line with ``(Actor pid=N)``).

Pure: :class:`TrainerConsole` is fed the output as it arrives and returns what to show.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Ray's prefix of a worker's line: ``(TaskRunnerV1 pid=8060)``, ``(raylet)``, ``(pid=9947, ip=10.0.0.2)``.
_RAY_PREFIX = re.compile(r"^(\((?:[\w.:-]+ )?(?:pid=\d+(?:, ip=[\d.:a-f]+)?|raylet|gcs_server)\) ?)")
#: Ray's log deduplication writes a line seen N more times once, with this suffix.
_RAY_REPEATED = re.compile(r"\s*\[repeated (\d+)x across cluster\](?: \(Ray deduplicates logs.*\))?\s*$")
_PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")
_WARNING = re.compile(r"(?<!['\"])\bWARN(ING)?\b(?!['\"])|\bWarning: |^\w*Warning: ")
_ERROR = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|^[\w.]*(Error|Exception)(\([\w.]*\))?(: |$)|^Fatal Python error"
                    r"|^Segmentation fault")
_TRACEBACK_START = re.compile(r"^(Traceback \(most recent call last\):|Exception ignored in)")
_CHAINED = re.compile(r"^(Traceback \(most recent call last\):|During handling of the above exception|"
                      r"The above exception was the direct cause|Exception ignored in)")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T][\d:,.]+|\b\d\d-\d\d \d\d:\d\d:\d\d\b|\[W\d{4} [\d:.]+ ")
_TOTAL_STEPS = re.compile(r"Total training steps: (\d+)")


@dataclass(frozen=True)
class Harmless:
    """A warning that every run of fipo's recipes prints and that says nothing about the run."""

    label: str
    pattern: re.Pattern[str]
    why: str


def _harmless(label: str, pattern: str, why: str) -> Harmless:
    return Harmless(label, re.compile(pattern), why)


#: Matched against a line without Ray's prefix. Each names the text it hides exactly: a warning
#: that merely resembles one of these is shown.
KNOWN_HARMLESS = (
    _harmless("TransferQueue thread cap", r"target_num_threads \d+ should not exceed total physical CPU cores",
              "TransferQueue lowers its own thread count to the cores there are"),
    _harmless("verl's optional engines", r"(torchtitan|veomni|automodel|mindspeed|megatron) engine is not available"
              r"|warnings\.warn\(f\"\w+ engine is not available",
              "verl 0.9.1 tries every engine it knows in every worker; fipo trains with FSDP"),
    _harmless("no critic for GRPO", r"Disabled critic as algorithm\.adv_estimator != gae",
              "FIPO and DAPO estimate advantages per group (GRPO): there is no critic to train"),
    _harmless("no Triton on CPU", r"Triton is installed, but doesn't include CPU backend|Triton is not installed\. "
              r"triton-cpu|Model Runner V2 requires Triton",
              "vLLM's and verl's CPU paths run without Triton kernels"),
    _harmless("vLLM runs eagerly", r"Enforce eager set, disabling torch\.compile|Inductor compilation was disabled by "
              r"user settings|does not officially support disabling chunked prefill",
              "fipo's CPU settings (enforce_eager, chunked prefill off), chosen on purpose"),
    _harmless("CPU tuning hints", r"(libtcmalloc|libiomp) is not found in LD_PRELOAD|NUMA binding: Using MEMBIND"
              r"|Failed to set NUMA affinity|IPC is not supported on your devices",
              "performance advice of vLLM's and verl's CPU backends"),
    _harmless("deprecations inside the libraries", r"`torch\.distributed\.reduce_op` is deprecated|'set_vital' is "
              r"deprecated|Passing raw prompts to InputProcessor is deprecated",
              "deprecated calls that vLLM and torchdata make themselves"),
    _harmless("vLLM server notices", r"LoRA dynamic loading & unloading is enabled|Default vLLM sampling parameters "
              r"have been overridden by the model's",
              "verl's rollout server turns LoRA loading on and passes the sampling settings itself"),
    _harmless("no image processor", r"`Qwen2VLImageProcessor` requires torchvision",
              "transformers probes an image processor that text training never uses"),
    _harmless("no profiler", r"agent loop only support torch and npu profiler, got None", "profiling is off"),
)


@dataclass(frozen=True)
class Notice:
    """A real warning or an error, with all its lines (Ray's prefix kept: it names the process)."""

    kind: str
    """``warning`` or ``error``."""
    lines: tuple[str, ...]
    repeats: int = 1
    """How often the line was printed when Ray folded repeats of it into one."""


@dataclass
class Shown:
    """What a piece of output gave the view."""

    notices: list[Notice] = field(default_factory=list)
    phase: str | None = None
    total_steps: int | None = None


#: Start-up milestones in the order they come, each the phase that begins there.
PHASES = (
    (re.compile(r"Connected to Ray cluster"), "Ray connected: loading the data"),
    (re.compile(r"create worker group"), "starting the training workers"),
    (re.compile(r"Loading weights|contains [\d.]+[KMB]? parameters"), "loading the model"),
    (re.compile(r"actor and ref model engine initialized"), "model loaded: starting the rollout"),
    (re.compile(r"Initializing a V1 LLM engine|vLLMHttpServer"), "starting vLLM"),
    (re.compile(r"all initialize finished, ready to fit"), "ready: the first step runs (its generation warms up)"),
)


def _has_level(body: str) -> bool:
    """Whether a line says it is a warning or an error: the start of a message, not the rest of one."""
    return bool(_WARNING.search(body) or _ERROR.search(body) or _PYTHON_WARNING.match(body))


def _known(text: str) -> Harmless | None:
    return next((known for known in KNOWN_HARMLESS if known.pattern.search(text)), None)


@dataclass
class _Block:
    """An error (or a Python warning with its source line) being gathered from one process's lines."""

    kind: str
    lines: list[str]
    repeats: int = 1
    ended: bool = False
    """Its last line has come (a traceback's exception line): more indented lines still belong to it."""
    hidden: bool = False
    body: str = ""
    """A one-line warning's text: Ray cuts long lines in two, and the rest may make it a known one."""
    flushed: bool = False
    """A :meth:`TrainerConsole.flush` has passed since it ended."""


class TrainerConsole:
    """Reads the trainer's output as it arrives (:meth:`feed`) and says what the view shows of it.

    ``harmless`` counts what :data:`KNOWN_HARMLESS` hid, by label (Ray's folded repeats counted);
    ``lines`` counts every line the trainer printed. An error is shown when its last line has come
    (:meth:`flush`, called between reads, or the next line of its process), with all its lines.
    """

    def __init__(self) -> None:
        self._partial = ""
        self._blocks: dict[str, _Block] = {}
        """What is being gathered, by the Ray prefix of its process ('' outside Ray)."""
        self._seen_warnings: Counter[str] = Counter()
        self._phase_index = -1
        self.harmless: Counter[str] = Counter()
        self.repeated_warnings = 0
        self.lines = 0

    def feed(self, text: str) -> Shown:
        """What the output ``text`` (any piece of it: lines are completed across calls) gives the view."""
        shown = Shown()
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            for part in _ANSI.sub("", line).split("\r"):  # a progress bar redraws its line with \r
                self._line(part, shown)
        return shown

    def flush(self) -> Shown:
        """The errors and warnings whose last line came before the previous flush: shown now rather than
        at their process's next line (one flush later than their last line, so that the second half of
        a line Ray cut in two, or more lines of an error message, can still join them)."""
        shown = Shown()
        for prefix, block in list(self._blocks.items()):
            if block.ended and block.flushed:
                self._emit(prefix, shown)
            elif block.ended:
                block.flushed = True
        return shown

    def close(self) -> Shown:
        """The output has ended: everything still gathered is shown as it stands."""
        shown = Shown()
        if self._partial:
            for part in _ANSI.sub("", self._partial).split("\r"):
                self._line(part, shown)
            self._partial = ""
        for prefix in list(self._blocks):
            self._emit(prefix, shown)
        return shown

    def _emit(self, prefix: str, shown: Shown) -> None:
        block = self._blocks.pop(prefix)
        if not block.hidden:
            shown.notices.append(Notice(block.kind, tuple(block.lines), block.repeats))

    def _line(self, raw: str, shown: Shown) -> None:
        if not raw.strip():
            return
        self.lines += 1
        match = _RAY_PREFIX.match(raw)
        prefix = match.group(1).strip() if match else ""
        body = raw[match.end():] if match else raw
        repeated = _RAY_REPEATED.search(body)
        repeats = int(repeated.group(1)) if repeated else 1
        body = body[: repeated.start()] if repeated else body
        display = f"{prefix} {body}" if prefix else body
        indented = body.startswith((" ", "\t"))

        block = self._blocks.get(prefix)
        if block is not None:
            if indented:  # a frame, a source line
                block.lines.append(display)
                return
            harmless = _known(body) if _has_level(body) else None
            if harmless is not None and block.kind == "error":  # logged by the same process mid-traceback
                self.harmless[harmless.label] += repeats
                return
            if not block.ended:  # a traceback's exception line, or the phrase that chains the next traceback
                block.lines.append(display)
                block.ended = _CHAINED.match(body) is None
                return
            cut = block.body and len(block.lines) == 1 and not _has_level(body)
            rest = _known(block.body + body) if cut else None
            if rest is not None:  # the second half of a line Ray cut (it has no level of its own)
                del self._blocks[prefix]
                self.harmless[rest.label] += block.repeats
                return
            self._emit(prefix, shown)
        if _TRACEBACK_START.match(body):
            self._blocks[prefix] = _Block("error", [display])
            return
        self._phase(body, shown)
        python_warning = _PYTHON_WARNING.match(body) is not None
        kind = "error" if _ERROR.search(body) and not python_warning else (
            "warning" if python_warning or _WARNING.search(body) else None)
        if kind is None:
            return
        harmless = _known(body)
        if harmless is not None:
            self.harmless[harmless.label] += repeats
            if python_warning:  # its source line follows: hidden with it
                self._blocks[prefix] = _Block("warning", [], ended=True, hidden=True)
            return
        if kind == "warning":
            key = _TIMESTAMP.sub("", body).strip()
            self._seen_warnings[key] += repeats
            if self._seen_warnings[key] > repeats:  # shown before: counted, not repeated
                self.repeated_warnings += repeats
                if python_warning:
                    self._blocks[prefix] = _Block("warning", [], ended=True, hidden=True)
                return
        # An error line may be followed by indented lines (Ray's RayTaskError carries the worker's traceback).
        self._blocks[prefix] = _Block(kind, [display], repeats, ended=True, body="" if python_warning else body)

    def _phase(self, body: str, shown: Shown) -> None:
        total = _TOTAL_STEPS.search(body)
        if total:
            shown.total_steps = int(total.group(1))
        for index, (pattern, phase) in enumerate(PHASES):
            if index > self._phase_index and pattern.search(body):
                self._phase_index = index
                shown.phase = phase

    @property
    def hidden_warnings(self) -> int:
        return sum(self.harmless.values())

    def summary(self) -> str | None:
        """One line on what was counted and not shown; None when nothing was."""
        if not self.harmless and not self.repeated_warnings:
            return None
        parts = []
        if self.harmless:
            kinds = ", ".join(f"{label} {count}" for label, count in self.harmless.most_common())
            parts.append(f"{self.hidden_warnings} known-harmless warnings ({kinds})")
        if self.repeated_warnings:
            parts.append(f"{self.repeated_warnings} repeats of warnings shown once")
        return "fipo: counted, not shown: " + "; ".join(parts) + " (all of them are in train.log)"
