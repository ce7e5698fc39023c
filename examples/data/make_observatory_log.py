"""Regenerate ``observatory_log.txt``: a year of maintenance log for a made-up observatory.

Deterministic (fixed seed), so the file in the repository is exactly what this script writes.
A few facts are planted for questions with one right answer: the dome-3 cryocooler causes
the most CRITICAL events, and one entry records the date the secondary mirror was re-coated.
"""

from __future__ import annotations

import datetime
import random
from pathlib import Path

SUBSYSTEMS = {
    "dome-1": ["shutter motor", "azimuth drive", "rain sensor", "ventilation fan"],
    "dome-2": ["shutter motor", "azimuth drive", "dehumidifier", "encoder"],
    "dome-3": ["cryocooler", "shutter motor", "azimuth drive", "vacuum gauge"],
    "spectrograph": ["CCD controller", "grating turret", "calibration lamp", "shutter"],
    "network": ["core switch", "fibre link", "NTP server", "firewall"],
    "power": ["UPS", "generator", "inverter", "battery bank"],
}
NOTES = [
    "Checked and cleaned; readings back to nominal.",
    "Technician on site within the hour.",
    "Replaced a worn part from stores.",
    "Firmware reflashed; monitoring for recurrence.",
    "Observers notified; night schedule adjusted.",
    "No action needed after inspection.",
    "Logged with the vendor under the support contract.",
    "Temperature drift traced to the enclosure heater.",
]
SEVERITIES = ["INFO"] * 12 + ["WARNING"] * 5 + ["ERROR"] * 2 + ["CRITICAL"]


def generate(seed: int = 20240101) -> str:
    """The whole log as text."""
    rng = random.Random(seed)
    lines = ["Cerro Alto Observatory, maintenance log 2024 (all times UTC)", ""]
    day = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    entry = 0
    while day.year == 2024:
        for _ in range(rng.randint(6, 12)):
            entry += 1
            when = day + datetime.timedelta(minutes=rng.randint(0, 1439))
            system = rng.choice(list(SUBSYSTEMS))
            part = rng.choice(SUBSYSTEMS[system])
            severity = rng.choice(SEVERITIES)
            if system == "dome-3" and rng.random() < 0.12:
                part, severity = "cryocooler", "CRITICAL"
            temp = round(rng.uniform(-8.0, 19.0), 1)
            note = rng.choice(NOTES)
            lines.append(
                f"{when:%Y-%m-%d %H:%M} #{entry:05d} [{severity}] {system}/{part}: "
                f"ambient {temp} C. {note}"
            )
        if day == datetime.datetime(2024, 8, 14, tzinfo=datetime.UTC):
            entry += 1
            lines.append(
                f"2024-08-14 10:30 #{entry:05d} [INFO] telescope/secondary mirror: re-coated "
                "with protected silver by the vendor crew; reinstalled and collimated."
            )
        day += datetime.timedelta(days=1)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("observatory_log.txt")
    target.write_text(generate(), encoding="utf-8")
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")
