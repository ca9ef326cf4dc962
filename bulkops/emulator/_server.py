"""Ways to run the emulator: in the current loop, on a background thread, or in the foreground.

* :func:`running_emulator`: ``async with running_emulator(world, config) as base_url`` for
  async tests and for ``bulkops run --sandbox`` (same process, same loop).
* :class:`EmulatorThread`: its own loop on a daemon thread, for tests that drive the CLI as a
  subprocess and then inspect ``world`` from the main thread.
* :func:`serve_forever`: the ``bulkops emulator`` command; prints where it listens and the keys,
  runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from aiohttp import web

from ._app import create_app
from ._config import EmulatorConfig
from ._world import World

__all__ = ["EmulatorThread", "running_emulator", "serve_forever"]

_SHUTDOWN_TIMEOUT_S = 1.0


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@asynccontextmanager
async def running_emulator(
    world: World,
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """Serve ``world`` on ``host:port`` (0 = any free port); yields the base URL."""
    runner = web.AppRunner(
        create_app(world, config),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield _base_url(host, bound_port)
    finally:
        await runner.cleanup()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread.

    ``with EmulatorThread(world, config) as emu: ... emu.base_url ...``; ``stop()`` (or leaving
    the block) shuts the server down and joins the thread. Startup errors (say, the port is
    taken) are raised from ``start()`` in the calling thread.
    """

    def __init__(
        self,
        world: World,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.world = world
        self.config = config or EmulatorConfig()
        self._host, self._port = host, port
        self._base_url: str | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("EmulatorThread is not running; call start() or use it in 'with'")
        return self._base_url

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            raise RuntimeError("EmulatorThread already started")
        self._thread = threading.Thread(target=self._run, name="bulkops-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        """Shut down and wait for the thread; safe to call twice."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join()
        self._base_url = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorThread(base_url={self._base_url!r}, world={self.world!r})"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() if it happened before readiness
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_emulator(self.world, self.config, self._host, self._port) as url:
            self._base_url = url
            self._ready.set()
            await self._stop.wait()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8787,
    seed: str = "demo",
    scale: int = 1,
    config: EmulatorConfig | None = None,
    world: World | None = None,
) -> None:
    """Serve ``world`` (default: the demo world of ``seed`` and ``scale``) until SIGINT/SIGTERM;
    prints the base URL and each project's keys.

    Output (flushed, one item per line, stable for scripts)::

        Statsig Console API emulator listening on http://127.0.0.1:8787
        project source key console-demo-source-key
        project source read-only-key console-demo-source-readonly-key
        project target key console-demo-target-key
    """
    from ._demo import build_demo_world

    if world is None:
        world = build_demo_world(seed=seed, scale=scale)
    asyncio.run(_serve(world, config or EmulatorConfig(), host, port))


async def _serve(world: World, config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_emulator(world, config, host, port) as url:
            lines = [f"Statsig Console API emulator listening on {url}"]
            for project in world.projects.values():
                lines.append(f"project {project.name} key {project.console_key}")
                lines.extend(
                    f"project {project.name} read-only-key {key}"
                    for key in sorted(project.read_only_keys)
                )
            # `bulkops emulator` prints its URL and keys for the user to export; the emulator
            # imports nothing from bulkops (not even bulkops.human), so this is its one print.
            print("\n".join(lines), flush=True)  # noqa: T201
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
