"""The doctor's Prescription form: read its lines from the posted form, in the clinic's words.

The form sends each field once per line, in line order (`medicine_id`, `dose`,
`frequency`, `duration`, `instruction_id`, `quantity`, and the search box
`medicine_search`), so adding or removing a line in the browser needs no renumbering.
`read_prescription` turns them into the body `create_prescription` takes, or into
messages a doctor can act on ("Line 2: enter the dose, e.g. 500 mg or 1 tablet.");
nothing here raises on bad input, so no input can become a 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from werkzeug.datastructures import MultiDict

MAX_LINES = 50  # PrescriptionCreateSchema's limit
MAX_TEXT = 60  # dosage and frequency columns
MAX_NOTES = 2000
MAX_DAYS = 365
MAX_QUANTITY = 10_000
LINE_FIELDS = (
    "medicine_id",
    "medicine_search",
    "dose",
    "frequency",
    "duration",
    "instruction_id",
    "quantity",
)
# "1-0-1", "1+0+1", "1-1-1-1": doses per day; with the days it gives the quantity.
_DAILY_PATTERN = re.compile(r"^\s*(\d{1,2})(?:\s*[-+]\s*(\d{1,2})){1,3}\s*$")


@dataclass
class Line:
    """One line as typed (strings), for showing the form again."""

    medicine_id: str = ""
    medicine_search: str = ""
    dose: str = ""
    frequency: str = ""
    duration: str = ""
    instruction_id: str = ""
    quantity: str = ""
    medicine_label: str = ""

    def is_blank(self) -> bool:
        return not any(
            (self.medicine_id, self.dose, self.frequency, self.duration, self.quantity, self.instruction_id)
        )


@dataclass
class PrescriptionForm:
    lines: list[Line]
    notes: str = ""
    errors: list[str] = field(default_factory=list)
    data: dict | None = None  # the service's body when there is no error


def _clean(value: str, limit: int = 200) -> str:
    return value.strip()[:limit]


def _whole(value: str, low: int, high: int) -> int | None:
    if not re.fullmatch(r"\d{1,6}", value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def daily_doses(frequency: str) -> int | None:
    """Doses a day written as "1-0-1" (3 parts or more); None for other wording."""
    if not _DAILY_PATTERN.match(frequency):
        return None
    return sum(int(part) for part in re.findall(r"\d+", frequency))


def read_lines(form: MultiDict) -> list[Line]:
    columns = {name: form.getlist(name) for name in LINE_FIELDS}
    count = min(max((len(values) for values in columns.values()), default=0), MAX_LINES + 1)
    lines = []
    for index in range(count):
        values = {
            name: _clean(columns[name][index] if index < len(columns[name]) else "", MAX_TEXT + 20)
            for name in LINE_FIELDS
        }
        lines.append(Line(**values))
    return lines


def read_prescription(form: MultiDict) -> PrescriptionForm:
    """The posted form as lines and, when every line is complete, the service's body."""
    all_lines = read_lines(form)
    notes = form.get("notes", "").strip()
    result = PrescriptionForm(
        lines=[line for line in all_lines if not line.is_blank()] or [Line()], notes=notes
    )
    errors = result.errors
    filled = [line for line in all_lines if not line.is_blank()]
    if len(filled) > MAX_LINES:
        errors.append(f"At most {MAX_LINES} medicines on one prescription: split it in two.")
        return result
    if not filled:
        errors.append("Add at least one medicine: type its brand or generic name and pick it from the list.")
    if len(notes) > MAX_NOTES:
        errors.append(f"The notes are too long: at most {MAX_NOTES} characters.")
    items = []
    for number, line in enumerate(filled, start=1):
        where = f"Line {number}"
        medicine_id = _whole(line.medicine_id, 1, 2**31 - 1)
        if medicine_id is None:
            errors.append(
                f"{where}: choose a medicine (type its brand or generic name, then pick it from the list)."
            )
        if not line.dose:
            errors.append(f"{where}: enter the dose, e.g. 500 mg or 1 tablet.")
        elif len(line.dose) > MAX_TEXT:
            errors.append(f"{where}: the dose is too long (at most {MAX_TEXT} characters).")
        if not line.frequency:
            errors.append(f"{where}: enter how often, e.g. 1-0-1 or twice a day.")
        elif len(line.frequency) > MAX_TEXT:
            errors.append(f"{where}: the frequency is too long (at most {MAX_TEXT} characters).")
        days = _whole(line.duration, 1, MAX_DAYS)
        if days is None:
            errors.append(f"{where}: enter the duration in days, a whole number from 1 to {MAX_DAYS}.")
        instruction_id = None
        if line.instruction_id:
            instruction_id = _whole(line.instruction_id, 1, 2**31 - 1)
            if instruction_id is None:
                errors.append(f"{where}: choose an instruction from the list.")
        quantity = _whole(line.quantity, 1, MAX_QUANTITY) if line.quantity else None
        if quantity is None and not line.quantity and days is not None:
            per_day = daily_doses(line.frequency)
            if per_day:
                quantity = min(per_day * days, MAX_QUANTITY)
                line.quantity = str(quantity)
        if quantity is None:
            errors.append(
                f"{where}: enter the quantity to dispense, a whole number from 1 to {MAX_QUANTITY}"
                " (filled in for you when the frequency is written like 1-0-1)."
            )
        items.append(
            {
                "medicine_id": medicine_id,
                "instruction_id": instruction_id,
                "dosage": line.dose,
                "frequency": line.frequency,
                "duration_days": days,
                "quantity": quantity,
            }
        )
    if not errors:
        result.data = {"notes": notes or None, "items": items}
    return result


def service_error_words(message: str, errors: dict | None) -> str:
    """A service's refusal of a prescription, in the doctor's words."""
    item_errors = ((errors or {}).get("json") or {}).get("items") or {}
    for index, fields in item_errors.items():
        number = int(index) + 1 if str(index).isdigit() else index
        if "medicine_id" in fields:
            return f"Line {number}: that medicine is no longer in the catalogue; search for it again."
        if "instruction_id" in fields:
            return f"Line {number}: that instruction is no longer in the catalogue; choose another."
    return message
