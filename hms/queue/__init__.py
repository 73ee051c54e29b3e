"""The queue of each doctor and day: the lock, tokens, positions and status moves
(`line`), the snapshot value (`snapshot`), what a change publishes after its commit
(`changes`), and the operations the routes call (`service`).

Other packages call these public functions; renames of what a snapshot shows go
through `touch_queues_of_patient` / `touch_queues_of_doctor` inside their unit of work.
"""

from hms.queue.changes import touch_queues_of_doctor, touch_queues_of_patient

__all__ = ["touch_queues_of_doctor", "touch_queues_of_patient"]
