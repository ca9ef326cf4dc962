"""What the tests share, one small module each, so no test file grows its own copy.

- ``clock``: ``FakeClock``, a clock tests move by hand or by sleeping on it.
- ``waiting``: ``wait_for``, polling a condition with a deadline (for subprocess tests).
- ``http``: ``serve`` an emulator and talk to it with ``Api``, a tiny raw JSON client.
- ``worlds``: the emulator worlds tests start from, and the ``world`` fixture (the demo world,
  its keys in the environment).
- ``jobs``: job files (export, clone), the environment that holds their keys, comparable
  snapshots of an export and of a project.
- ``commands``: bulkops commands in process (``run_export``, ``bulkops``) and as a subprocess
  (``cli``).
- ``batch``: the gates world and the job file of the batch_rule_update tests.
- ``openapi_spec``: the official OpenAPI spec as a validator (tests skip without it).
"""
