"""A fake Android device that speaks the adb wire protocol on a loopback port.

A real adb server connects to it with ``adb connect 127.0.0.1:PORT`` and drives it exactly as it drives
a phone over TCP: the CNXN (or AUTH) handshake, OPEN/OKAY/WRTE/CLSE streams, the ``shell:`` service
(v1: stdout and stderr merged, no exit status) and the ``sync:`` service (STAT, SEND/DATA/DONE,
RECV, QUIT). That lets the tests run the real ``adb`` client and server against scripted device
behaviour, so what is tested is what a release engineer's machine does, minus the phone.

The device keeps an in-memory file system (path -> bytes + mode) and records every shell command and
every pushed file. Its shell understands the handful of commands the harness sends; anything else is
answered by ``FakeDevice.extra_commands`` or with ``sh: <cmd>: not found`` and status 127, like
Android's toybox shell.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN = 1

RC_MARKER = re.compile(r"^\((?P<cmd>.*)\) 2>&1; echo (?P<marker>__\w+=)\$\?$", re.S)


@dataclass
class FakeFile:
    data: bytes
    mode: int


@dataclass
class ShellReply:
    """What one shell command prints and its exit status."""

    output: str
    status: int = 0


Scripted = str | ShellReply | Callable[[list[str]], "str | ShellReply"]
"""A benchmark's scripted answer: fixed text, text + status, or a function of its argv."""


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    kind: str
    outbox: list[bytes] = field(default_factory=list)
    awaiting_ack: bool = False
    close_when_drained: bool = False
    inbuf: bytearray = field(default_factory=bytearray)
    send_path: str | None = None
    send_mode: int = 0
    send_data: bytearray = field(default_factory=bytearray)


def _packet(command: int, arg0: int, arg1: int, payload: bytes = b"") -> bytes:
    checksum = sum(payload) & 0xFFFFFFFF
    header = struct.pack("<6I", command, arg0, arg1, len(payload), checksum, command ^ 0xFFFFFFFF)
    return header + payload


GETPROP = {
    "ro.product.model": "Pixel 7",
    "ro.product.manufacturer": "Google",
    "ro.product.board": "gs201",
    "ro.soc.model": "Tensor G2",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.build.version.sdk": "34",
    "ro.build.version.release": "14",
    "ro.build.fingerprint": "google/panther/panther:14/UQ1A.240205.004/11269751:user/release-keys",
}

DUMPSYS_BATTERY = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3898000
  status: 2
  health: 2
  present: true
  level: 85
  scale: 100
  voltage: 4281
  temperature: 285
  technology: Li-ion
"""


class FakeDevice:
    """One fake phone listening on 127.0.0.1; start() returns its port."""

    def __init__(
        self,
        *,
        benchmark_outputs: dict[str, Scripted] | None = None,
        authorized: bool = True,
        props: dict[str, str] | None = None,
        battery_temps: list[int] | None = None,
        benchmark_delay_s: float = 0.0,
    ) -> None:
        self.benchmark_outputs = dict(benchmark_outputs or {})
        self.authorized = authorized
        self.props = dict(GETPROP if props is None else props)
        self.battery_temps = list(battery_temps or [285])
        self.benchmark_delay_s = benchmark_delay_s
        self.files: dict[str, FakeFile] = {}
        self.dirs: set[str] = {"/", "/data", "/data/local", "/data/local/tmp"}
        self.commands: list[str] = []
        self.pushed: list[str] = []
        self.benchmarks_run: list[str] = []
        self.benchmark_intervals: list[tuple[float, float]] = []
        self.extra_commands: dict[str, Callable[[str], ShellReply]] = {}
        self.free_bytes = 10 * 1024 * 1024 * 1024
        self.noexec = False
        self.disconnect_on_benchmark: int | None = None
        self.running_benchmarks = 0
        self.max_concurrent_benchmarks = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        """Listen on ``port`` (0: any free one); a reconnected phone keeps its serial by reusing it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(4)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self.port

    def stop(self) -> None:
        """Vanish like an unplugged phone: stop listening and drop every connection."""
        self._stopped.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            with contextlib.suppress(OSError):
                self._listener.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped.is_set():
                conn.close()
                return
            # Without NODELAY, Nagle + delayed ACK add ~40 ms to every small OKAY/WRTE exchange.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # ---- packet loop -----------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        streams: dict[int, _Stream] = {}
        next_id = [1]
        try:
            while not self._stopped.is_set():
                header = self._recv_exact(conn, 24)
                command, arg0, arg1, length, _checksum, _magic = struct.unpack("<6I", header)
                payload = self._recv_exact(conn, length) if length else b""
                self._dispatch(conn, streams, next_id, command, arg0, arg1, payload)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed")
            buf += chunk
        return bytes(buf)

    def _dispatch(
        self,
        conn: socket.socket,
        streams: dict[int, _Stream],
        next_id: list[int],
        command: int,
        arg0: int,
        arg1: int,
        payload: bytes,
    ) -> None:
        if command == A_CNXN:
            if self.authorized:
                banner = (
                    b"device::ro.product.name=fake;ro.product.model=Fake;ro.product.device=fake;features="
                )
                conn.sendall(_packet(A_CNXN, A_VERSION, MAX_PAYLOAD, banner))
            else:
                conn.sendall(_packet(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
        elif command == A_AUTH:
            # Signatures are never accepted and public keys never confirmed: "unauthorized" forever,
            # as a phone whose owner has not tapped "Allow USB debugging".
            if arg0 == 2:
                conn.sendall(_packet(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))
        elif command == A_OPEN:
            service = payload.rstrip(b"\0").decode()
            local_id = next_id[0]
            next_id[0] += 1
            if service.startswith("shell:"):
                stream = _Stream(local_id, arg0, "shell")
                streams[local_id] = stream
                conn.sendall(_packet(A_OKAY, local_id, arg0))
                reply = self._run_shell(service[len("shell:") :], conn)
                if reply is None:
                    return
                self._queue(stream, reply.output.encode())
                stream.close_when_drained = True
                self._pump(conn, streams, stream)
            elif service == "sync:":
                streams[local_id] = _Stream(local_id, arg0, "sync")
                conn.sendall(_packet(A_OKAY, local_id, arg0))
            else:
                conn.sendall(_packet(A_CLSE, 0, arg0))
        elif command == A_OKAY:
            stream = streams.get(arg1)
            if stream is not None:
                stream.awaiting_ack = False
                self._pump(conn, streams, stream)
        elif command == A_WRTE:
            stream = streams.get(arg1)
            if stream is None:
                return
            conn.sendall(_packet(A_OKAY, stream.local_id, stream.remote_id))
            if stream.kind == "sync":
                stream.inbuf += payload
                self._sync(stream)
                self._pump(conn, streams, stream)
        elif command == A_CLSE:
            stream = streams.pop(arg1, None)
            if stream is not None:
                conn.sendall(_packet(A_CLSE, stream.local_id, stream.remote_id))

    @staticmethod
    def _queue(stream: _Stream, data: bytes) -> None:
        for start in range(0, len(data), MAX_PAYLOAD):
            stream.outbox.append(data[start : start + MAX_PAYLOAD])

    def _pump(self, conn: socket.socket, streams: dict[int, _Stream], stream: _Stream) -> None:
        if stream.awaiting_ack:
            return
        if stream.outbox:
            conn.sendall(_packet(A_WRTE, stream.local_id, stream.remote_id, stream.outbox.pop(0)))
            stream.awaiting_ack = True
        elif stream.close_when_drained:
            streams.pop(stream.local_id, None)
            conn.sendall(_packet(A_CLSE, stream.local_id, stream.remote_id))

    # ---- sync service ----------------------------------------------------------------------------
    def _sync(self, stream: _Stream) -> None:
        buf = stream.inbuf
        while len(buf) >= 8:
            ident = bytes(buf[:4])
            length = struct.unpack("<I", buf[4:8])[0]
            if ident == b"DONE":  # length is the mtime here, no payload follows
                del buf[:8]
                self._finish_send(stream)
                continue
            if ident == b"QUIT":
                del buf[:8]
                stream.close_when_drained = True
                continue
            if len(buf) < 8 + length:
                return
            body = bytes(buf[8 : 8 + length])
            del buf[: 8 + length]
            if ident == b"STAT":
                stream.outbox.append(self._stat(body.decode()))
            elif ident == b"SEND":
                path, _, mode = body.decode().rpartition(",")
                stream.send_path, stream.send_mode = path, int(mode)
                stream.send_data = bytearray()
            elif ident == b"DATA":
                stream.send_data += body
            elif ident == b"RECV":
                stream.outbox.append(self._recv(body.decode()))
            else:
                stream.outbox.append(_fail(f"unknown sync request {ident!r}"))

    def _stat(self, path: str) -> bytes:
        if path in self.dirs:
            return b"STAT" + struct.pack("<3I", 0o040771, 4096, int(time.time()))
        file = self.files.get(path)
        if file is None:
            return b"STAT" + struct.pack("<3I", 0, 0, 0)
        return b"STAT" + struct.pack("<3I", 0o100000 | file.mode, len(file.data), int(time.time()))

    def _finish_send(self, stream: _Stream) -> None:
        path = stream.send_path or ""
        data = bytes(stream.send_data)
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in self.dirs:
            stream.outbox.append(_fail(f"secure_mkdirs failed: {parent}: No such file or directory"))
        elif len(data) > self.free_bytes:
            stream.outbox.append(_fail(f"write failed: No space left on device: {path}"))
        else:
            with self._lock:
                self.files[path] = FakeFile(data, stream.send_mode & 0o777)
                self.pushed.append(path)
                self.free_bytes -= len(data)
            stream.outbox.append(b"OKAY" + struct.pack("<I", 0))
        stream.send_path = None

    def _recv(self, path: str) -> bytes:
        file = self.files.get(path)
        if file is None:
            return _fail("No such file or directory")
        return b"DATA" + struct.pack("<I", len(file.data)) + file.data + b"DONE" + struct.pack("<I", 0)

    # ---- shell service ---------------------------------------------------------------------------
    def _run_shell(self, command: str, conn: socket.socket) -> ShellReply | None:
        with self._lock:
            self.commands.append(command)
        match = RC_MARKER.match(command)
        inner = match.group("cmd") if match else command
        reply = self._execute(inner, conn)
        if reply is None:
            return None
        if match:
            reply = ShellReply(reply.output + f"{match.group('marker')}{reply.status}\n", reply.status)
        return reply

    def _execute(self, command: str, conn: socket.socket) -> ShellReply | None:
        for prefix, handler in self.extra_commands.items():
            if command.startswith(prefix):
                return handler(command)
        if command == "getprop":
            return ShellReply("".join(f"[{k}]: [{v}]\n" for k, v in self.props.items()))
        if command == "dumpsys battery":
            temp = self.battery_temps.pop(0) if len(self.battery_temps) > 1 else self.battery_temps[0]
            return ShellReply(re.sub(r"temperature: \d+", f"temperature: {temp}", DUMPSYS_BATTERY))
        if "thermal_zone" in command:
            return ShellReply("cpu-0-0-usr 41200\nbattery 28500\nskin-therm 33100\n")
        argv = shlex.split(command)
        env_prefix = [a for a in argv if re.match(r"^[A-Z_]+=", a)]
        argv = argv[len(env_prefix) :]
        if argv and argv[0] == "taskset":
            argv = argv[2:]
        if not argv:
            return ShellReply("")
        name = argv[0]
        if name == "mkdir":
            for path in argv[1:]:
                if not path.startswith("-"):
                    parts = path.rstrip("/").split("/")
                    for i in range(2, len(parts) + 1):
                        self.dirs.add("/".join(parts[:i]))
            return ShellReply("")
        if name == "rm":
            target = argv[-1].rstrip("/")
            self.dirs = {d for d in self.dirs if d != target and not d.startswith(target + "/")}
            self.files = {p: f for p, f in self.files.items() if not p.startswith(target + "/")}
            return ShellReply("")
        if name == "chmod":
            path = argv[-1]
            if path not in self.files:
                return ShellReply(f"chmod: {path}: No such file or directory\n", 1)
            if not self.noexec:
                self.files[path].mode |= 0o755
            return ShellReply("")
        if name.startswith("/"):
            return self._exec_binary(name, argv, conn)
        return ShellReply(f"/system/bin/sh: {name}: not found\n", 127)

    def _exec_binary(self, path: str, argv: list[str], conn: socket.socket) -> ShellReply | None:
        file = self.files.get(path)
        if file is None:
            return ShellReply(f"/system/bin/sh: {path}: No such file or directory\n", 127)
        if not file.mode & 0o100 or self.noexec:
            return ShellReply(f"/system/bin/sh: {path}: can't execute: Permission denied\n", 126)
        tool = os.path.basename(path)
        model = next((a.split("=", 1)[1] for a in argv if a.startswith("--graph=")), argv[-1])
        if model not in self.files:
            return ShellReply(f"Failed to load model {model}\n", 1)
        with self._lock:
            self.benchmarks_run.append(" ".join(argv))
            count = len(self.benchmarks_run)
            self.running_benchmarks += 1
            self.max_concurrent_benchmarks = max(self.max_concurrent_benchmarks, self.running_benchmarks)
        try:
            if self.disconnect_on_benchmark is not None and count >= self.disconnect_on_benchmark:
                self.stop()
                return None
            started = time.monotonic()
            if self.benchmark_delay_s:
                time.sleep(self.benchmark_delay_s)
            self.benchmark_intervals.append((started, time.monotonic()))
            scripted = self.benchmark_outputs.get(tool, f"{tool}: no scripted output\n")
            if callable(scripted):
                scripted = scripted(argv)
            return scripted if isinstance(scripted, ShellReply) else ShellReply(scripted)
        finally:
            with self._lock:
                self.running_benchmarks -= 1


def _fail(message: str) -> bytes:
    data = message.encode()
    return b"FAIL" + struct.pack("<I", len(data)) + data
