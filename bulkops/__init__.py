"""bulkops: bulk operations and migrations on the Statsig Console API.

Rooms: ``api`` (client, rate governor), ``engine`` (task graph, journal, state), ``jobs`` (one module
per job kind), ``output`` (atomic publishing), ``emulator`` (the Console API emulator), ``cli``.
"""

__version__ = "0.1.0"
