"""What `netdsl synth` shows while it runs: the phase, a bar over the whole run's work (prototype, search,
finalists), the time elapsed and an estimate of the time left, and the best network by the utility the run
maximises. In a terminal it is a live display; in a log each finished piece of work prints one line that ends
with the same times.

The work is counted in training images seen (gensynth.plan.WorkPlan). The time left is the remaining images of
each kind (full-size training: the prototype's and the finalists'; short fine-tunes: the search's) divided by the
rate measured on that kind in this session, or on the other kind until one has been measured; between events the
estimate counts down.
"""

from __future__ import annotations

import textwrap
import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from gensynth.tasks.metrics import label
from netdsl.cli.layout import wrap_items
from netdsl.cli.training_view import metrics_text

UTILITY_NAMES = {"netscore": "NetScore", "density": "information density"}


def clock(seconds: float) -> str:
    """1:02:03, 12:03 or 0:05."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def utility_text(utility: str, record) -> str:
    """The value a run maximises, named: 'NetScore 61.2', 'information density 87.4', 'acc 91.20%'."""
    if utility in UTILITY_NAMES:
        value = record.netscore if utility == "netscore" else record.density
        return f"{UTILITY_NAMES[utility]} {value:.1f}"
    return f"{label(record.metric)} {record.score:.2%}"


class SynthView:
    """on_event for gensynth.loop.synthesize, rendering as the module's docstring says."""

    def __init__(self, console: Console, utility: str, executor: str = "", retries: int = 0):
        self.console = console
        self.utility = utility
        self.executor = executor
        self.retries = retries
        self.plan = None
        self.phase = "starting"
        self.started = self.mark = time.monotonic()  # mark: when the last piece of work finished
        self.session = {"train": [0, 0.0], "search": [0, 0.0]}  # images done and seconds spent, this session
        self.prototype_epochs = 1
        self.best = None
        self.profiled = -1  # the tenth of latency profiling last written to a log
        self.live = Live(self, console=console, refresh_per_second=2, transient=True) if console.is_terminal else None

    # ---- the estimate ----------------------------------------------------------------------------
    def finished(self, kind: str, images: int) -> None:
        now = time.monotonic()
        self.session[kind][0] += images
        self.session[kind][1] += now - self.mark
        self.mark = now

    def left(self) -> dict[str, int]:
        """Images still to see, of each kind: full-size training (prototype, finalists) and search fine-tunes."""
        p = self.plan
        train = p.prototype * (not p.prototype_done) + p.per_final * (p.finals - p.finals_done)
        search = p.per_candidate * (p.candidates - p.candidates_done)
        return {"train": max(0, train - self.session["train"][0]), "search": max(0, search - self.session["search"][0])}

    def remaining(self) -> float | None:
        """Seconds left by the measured rates, counted down since the last event; None until a rate is known."""
        if self.plan is None:
            return None
        rates = {k: n / s for k, (n, s) in self.session.items() if n and s > 0}
        if not rates:
            return None
        fallback = next(iter(rates.values()))
        seconds = sum(n / rates.get(k, fallback) for k, n in self.left().items())
        return max(0.0, seconds - (time.monotonic() - self.mark))

    def fraction(self) -> float:
        if self.plan is None or not self.plan.total:
            return 0.0
        return 1 - sum(self.left().values()) / self.plan.total

    def times(self) -> str:
        left = self.remaining()
        ahead = "estimating the time left" if left is None else f"about {clock(left)} left"
        return f"{clock(time.monotonic() - self.started)} elapsed, {ahead}"

    # ---- rendering -------------------------------------------------------------------------------
    def __rich__(self):
        width = self.console.width
        head = f"{self.phase}  "
        bar = max(10, min(40, width - len(head) - 6))
        filled = round(self.fraction() * bar)
        line = Text(head)
        line.append("━" * filled, "magenta")
        line.append("━" * (bar - filled), "dim")
        line.append(f" {self.fraction():4.0%}")
        items = [self.times()] + ([f"best {utility_text(self.utility, self.best)}"] if self.best is not None else [])
        return Group(line, Text(wrap_items(items, width, sep="; ")))

    def say(self, items: list[str]) -> None:
        """One line of a finished piece of work, with the times; broken between items to fit the width."""
        self.console.print(wrap_items([*items, self.times()], self.console.width), markup=False)

    def sentence(self, text: str) -> None:
        """A sentence, broken between words to fit the width."""
        self.console.print(textwrap.fill(text, self.console.width, subsequent_indent="  ", break_long_words=False,
                                         break_on_hyphens=False), markup=False)

    def __enter__(self):
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()

    # ---- events ----------------------------------------------------------------------------------
    def __call__(self, kind: str, payload) -> None:
        from gensynth.records import Failure

        if kind == "resume":
            cfg = payload["config"]
            self.console.print(wrap_items([f"resuming with the run's own settings: data {cfg.data}",
                                           "requirements " + (", ".join(cfg.requirements) or "none"),
                                           f"{cfg.cycles} cycles of {cfg.per_cycle}", f"seed {cfg.seed}"],
                                          self.console.width), markup=False)
            for note in payload["notes"]:
                self.console.print(wrap_items([f"  changed on resume: {note}"], self.console.width), markup=False)
        elif kind == "note":
            self.console.print(wrap_items([f"note: {payload}"], self.console.width), markup=False)
        elif kind == "start" and "executor" in payload:
            self.sentence(f"candidates run on: {payload['executor']}")
        elif kind == "plan":
            self.plan = payload
        elif kind == "notice":
            self.sentence(payload)
        elif kind == "latency_profile":
            self.phase = "profiling latency"
            from gensynth.latency.measure import setup_text

            how = setup_text(payload["runtime"], payload["threads"])
            self.console.print(wrap_items(["no --latency-model given", f"profiling this machine first ({how})",
                                           f"the model goes to {payload['out']}"], self.console.width), markup=False)
        elif kind == "latency_profile_progress":
            done, total = payload["done"], payload["total"]
            self.phase = f"profiling latency {done}/{total}"
            if self.live is None and total and done * 10 // total > self.profiled:  # in a log: a line per tenth
                self.profiled = done * 10 // total
                self.console.print(wrap_items([f"profiling latency: {done}/{total} measurements ({done / total:.0%})",
                                               f"{clock(time.monotonic() - self.started)} elapsed"],
                                              self.console.width), markup=False)
        elif kind == "prototype_training":
            self.phase = f"training the prototype ({payload['epochs']} epochs)"
            self.prototype_epochs = max(1, payload["epochs"])
        elif kind == "prototype_epoch":
            st = payload["stats"]
            self.finished("train", self.plan.prototype // self.prototype_epochs if self.plan else 0)
            self.say([f"prototype epoch {st.epoch}: val {metrics_text(st.val_metrics or {})}",
                      f"{st.images_per_s:,.0f} img/s"])
        elif kind == "prototype":
            self.mark = time.monotonic()
            self.say([f"prototype: val {label(payload.metric)} {payload.score:.2%}", f"{payload.macs / 1e6:.2f} M MACs",
                      f"{payload.params / 1e3:.1f} k params", utility_text(self.utility, payload)])
        elif kind == "cycle_start":
            where = f" ({self.executor})" if self.executor else ""
            self.phase = f"search: cycle {payload['cycle'] + 1}/{payload['cycles']}{where}"
        elif kind == "candidate_retry":
            self.say([f"candidate {payload['key']} lost: {payload['reason']}",
                      f"attempt {payload['attempt']} of {self.retries + 1}"])
        elif kind == "candidate" and isinstance(payload, Failure):
            self.finished("search", self.plan.per_candidate if self.plan else 0)
            self.say([f"candidate {payload.key} failed after {payload.attempts} attempt(s): {payload.error}"])
        elif kind == "candidate":
            self.finished("search", self.plan.per_candidate if self.plan else 0)
            if self.best is None or payload.utility > self.best.utility:
                self.best = payload
            predicted = "" if payload.predicted_latency is None else \
                f" (predicted {payload.predicted_latency * 1e3:.3f})"
            self.say([f"candidate {payload.key}: val {label(payload.metric)} {payload.score:.2%}",
                      f"{payload.macs / 1e6:.2f} M MACs", f"{payload.params / 1e3:.1f} k params",
                      f"{payload.latency * 1e3:.3f} ms{predicted}", utility_text(self.utility, payload),
                      f"{payload.wall_s:.1f} s"])
        elif kind == "final_start":
            self.phase = f"training {payload['name']} fully"
        elif kind == "export_start":
            self.phase = f"exporting {payload['name']} ({payload['export']})"
        elif kind == "export":
            int8 = ([f"int8 test {payload.int8_score:.2%}", f"{payload.int8_latency.median * 1e3:.3f} ms"]
                    if payload.int8_path else [])
            self.say([f"{payload.name}: {payload.float_path.name} test {label(payload.metric)} "
                      f"{payload.float_score:.2%}", f"{payload.float_latency.median * 1e3:.3f} ms", *int8])
        elif kind == "final":
            self.finished("train", self.plan.per_final if self.plan else 0)
            self.say([f"{payload.name}: val {label(payload.metric)} {payload.score:.2%}",
                      f"test {payload.test_score:.2%}", f"{payload.macs / 1e6:.2f} M MACs",
                      f"meets requirements: {'yes' if payload.meets else 'no'}"])
        if self.live is not None:
            self.live.refresh()
