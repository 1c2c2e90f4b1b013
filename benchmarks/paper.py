"""The paper's target (ELSR, arXiv 2208.14600; Mobile AI & AIM 2022 real-time video SR challenge)
and what can honestly be compared with it here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from elsr.benchmarks.results import Row


@dataclass(frozen=True)
class PaperTarget:
    fps: float = 30.0
    psnr: float = 27.34              # dB, REDS x4, the challenge's evaluation
    psnr_data: str = "REDS x4 (challenge test set)"
    power_w: float = 0.09            # W at 30 fps
    device: str = "MediaTek Dimensity 9000 NPU (APU)"
    score: float = 90.9              # the challenge score the paper reports

    @property
    def frame_budget_ms(self) -> float:
        return 1000.0 / self.fps


PAPER = PaperTarget()


def realtime_fraction(fps: float | None, target: PaperTarget = PAPER) -> float | None:
    return None if fps is None else fps / target.fps


def score_status(data: Path | None, target: PaperTarget = PAPER) -> str:
    """Why the challenge score is not computed for our rows."""
    psnr = f"our PSNR is on {data}, not {target.psnr_data}" if data else "no PSNR measured (no --data)"
    return (f"n/a: the challenge score combines PSNR on {target.psnr_data} with power measured on the "
            f"{target.device}; power is not measured here and {psnr}, so a score would mix our numbers with "
            f"the paper's and mean nothing")


def comparison(rows: list[Row], data: Path | None, target: PaperTarget = PAPER) -> dict:
    """The paper's figures (labelled as such), the best measured row against the frame budget, and the score."""
    timed = [r for r in rows if r.ok and r.median_ms is not None]
    fastest = min(timed, key=lambda r: r.median_ms, default=None)
    return {"target": {**asdict(target), "frame_budget_ms": target.frame_budget_ms, "source": "paper"},
            "measured_here": ["latency", "fps", "memory", "PSNR/SSIM on --data"],
            "from_paper": ["PSNR on REDS x4", "power (W)", "challenge score"],
            "fastest": None if fastest is None else
            {"name": fastest.name, "threads": fastest.threads, "median_ms": fastest.median_ms,
             "realtime_fraction": fastest.realtime_fraction,
             "meets_frame_budget": fastest.median_ms <= target.frame_budget_ms},
            "rows_meeting_frame_budget": [f"{r.name} (threads {r.threads or '-'})" for r in timed
                                          if r.median_ms <= target.frame_budget_ms],
            "score": score_status(data, target)}


def comparison_lines(info: dict) -> list[str]:
    t = info["target"]
    lines = [f"- Paper (not measured here): {t['psnr']} dB on {t['psnr_data']}, {t['power_w']} W at "
             f"{t['fps']:.0f} fps on the {t['device']}, challenge score {t['score']}.",
             f"- Frame budget at {t['fps']:.0f} fps: {t['frame_budget_ms']:.1f} ms; "
             f"'x30fps' in the table is fps / {t['fps']:.0f} on this machine."]
    fastest = info["fastest"]
    if fastest:
        verdict = "within" if fastest["meets_frame_budget"] else "over"
        lines.append(f"- Fastest row: {fastest['name']} (threads {fastest['threads'] or '-'}), "
                     f"{fastest['median_ms']:.2f} ms, {fastest['realtime_fraction']:.2f}x real time ({verdict} "
                     f"the budget); {len(info['rows_meeting_frame_budget'])} row(s) within it.")
    lines.append(f"- Challenge score: {info['score']}.")
    return lines
