"""How much work a synthesis run is, counted in training images seen per phase, and how much of it a journal says
is done: what a progress display estimates the time left from."""

from __future__ import annotations

from dataclasses import dataclass

from gensynth.config import SynthConfig
from gensynth.journal import Journal
from gensynth.records import FINAL_PREFIX, PROTOTYPE


@dataclass(frozen=True)
class WorkPlan:
    """A run's work, counted in training images seen, per phase, and how much a resumed run has done already:
    what a progress display estimates the time remaining from."""

    prototype: int  # images the prototype's training sees (0 when --weights gives it)
    prototype_done: bool
    per_candidate: int  # fine-tune images of one search candidate
    candidates: int
    candidates_done: int
    per_final: int  # images one finalist's training sees
    finals: int
    finals_done: int

    @property
    def total(self) -> int:
        return self.prototype + self.per_candidate * self.candidates + self.per_final * self.finals

    @property
    def done(self) -> int:
        return (self.prototype if self.prototype_done else 0) + self.per_candidate * self.candidates_done + \
            self.per_final * self.finals_done


def work_plan(journal: Journal, cfg: SynthConfig, train_images: int) -> WorkPlan:
    """The run's work in training images, and what the journal says is done."""
    prototype = 0 if cfg.prototype_weights else cfg.prototype_epochs * train_images
    finals = [r for r in journal.candidates() if r.key.startswith(FINAL_PREFIX)]
    return WorkPlan(prototype=prototype, prototype_done=journal.candidate(PROTOTYPE) is not None,
                    per_candidate=cfg.budget.images * cfg.budget.epochs,
                    candidates=cfg.cycles * cfg.per_cycle,
                    candidates_done=min(finished_so_far(journal), cfg.cycles * cfg.per_cycle),
                    per_final=cfg.budget.final_epochs * train_images, finals=cfg.finalists,
                    finals_done=min(len(finals), cfg.finalists))


def finished_so_far(journal: Journal) -> int:
    """Search candidates that will not run again: those evaluated, and the failures of cycles θG has moved past."""
    latest = journal.latest_generator()
    moved_past = latest[0] if latest else 0
    return len(journal.searched()) + sum(1 for f in journal.failures() if f.cycle < moved_past)
