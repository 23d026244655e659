"""The `otlp` output: matched events as OTLP log records, delivered at least once.

    emit() ──► Spool (SQLite, committed) ──► sender thread ──► exporter.export(batch) ──► ack
                                                    ▲                       │ FAILURE
                                                    └──── backoff (capped) ◄┘

The SDK's `BatchLogRecordProcessor` is not in this path: it drops the oldest record when its queue is
full and its `force_flush()` returns True even when every export failed, so nothing it says is an
acknowledgement. Here the sender calls the OTLP exporter itself and deletes records from the spool
only when `export()` returned SUCCESS, i.e. the receiver answered OK. A record is therefore delivered
at least once (a crash between the receiver's OK and the delete resends that batch).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource

import otel_fim
from otel_fim.event import Event
from otel_fim.export.delivery import LogTransport, Verdict
from otel_fim.export.endpoint import OtlpEndpoint, build_resource
from otel_fim.export.record import SEVERITY_NUMBER, SEVERITY_TEXT, log_record
from otel_fim.export.spool import SPOOL_FILE, Spool, SpooledRecord
from otel_fim.rules.match import Match

if TYPE_CHECKING:
    from otel_fim.export.metrics import FimMetrics

log = logging.getLogger(__name__)

SCOPE_NAME = "otel_fim"
# On a record spooled when its event matched and sent without its plugins' enrichment.
INCOMPLETE_KEY = "otel_fim.plugin.status"
_INT64 = (-(2**63), 2**63 - 1)


def otlp_value(value: Any) -> Any:
    """Coerce a record value to what OTLP's AnyValue can carry, so encoding can never fail.

    A batch that cannot be encoded would fail forever and block the spool behind it.
    """
    if value is None or isinstance(value, (str, bool, float, bytes)):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, (list, tuple)):
        return [otlp_value(v) for v in value if v is not None]
    if isinstance(value, Mapping):
        return {str(k): otlp_value(v) for k, v in value.items()}
    return str(value)


def to_sdk_record(
    record: Mapping[str, Any],
    *,
    observed_ns: int,
    resource: Resource,
    scope: Any,
) -> ReadWriteLogRecord:
    """One `record.log_record()` dict as the SDK log record the OTLP exporters encode: same fields."""
    attributes = {k: otlp_value(v) for k, v in record["attributes"].items() if v is not None}
    return ReadWriteLogRecord(
        LogRecord(
            timestamp=record["timestamp"],
            observed_timestamp=observed_ns,
            severity_number=SeverityNumber(record["severity_number"]),
            severity_text=record["severity_text"],
            body=record["body"],
            attributes=attributes,
            event_name=record["event_name"],
        ),
        resource=resource,
        instrumentation_scope=scope,
    )


class OtlpOutput:
    """Spools every record durably, then exports it with a real acknowledgement.

    Options (all keyword; from the config file's `otlp:` section or the CLI):
      endpoint, protocol, headers, timeout, insecure, compression — see `OtlpEndpoint`; unset ones
          fall back to the standard `OTEL_EXPORTER_OTLP_*` variables.
      state_dir: directory of the spool (`spool.db`); None keeps it in memory (lost on restart).
      spool_max_records, spool_max_bytes: the spool's bound; beyond it the least severe, oldest
          records are evicted and counted (`otel_fim.spool.dropped`) and logged.
      spool_sync: "NORMAL" (survives a killed process) or "FULL" (also power loss; fsync per event).
      batch_size: records per export request.
      backoff_initial, backoff_max: seconds between failed exports, doubling up to the cap.
      close_timeout: seconds `close()` keeps trying to deliver; what is left stays in the spool.
      max_dead_letters: poison records kept (the oldest go first beyond it, counted as dropped).
      pending_timeout: seconds a record written ahead waits for its enrichment before it is sent
          without (marked incomplete); a late enrichment is then sent as a second record.
      metrics: a `FimMetrics` to report spool depth, drops, failures and delivery latency to.
      resource: overrides `build_resource()`; exporter: overrides the OTLP exporter (tests).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        insecure: bool | None = None,
        compression: str | None = None,
        state_dir: str | Path | None = None,
        spool_max_records: int = 100_000,
        spool_max_bytes: int = 128 * 1024 * 1024,
        spool_sync: str = "NORMAL",
        batch_size: int = 512,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 5.0,
        max_dead_letters: int = 10_000,
        pending_timeout: float = 300.0,
        metrics: FimMetrics | None = None,
        resource: Resource | None = None,
        exporter: LogRecordExporter | None = None,
    ) -> None:
        if batch_size < 1 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need batch_size >= 1 and 0 < backoff_initial <= backoff_max")
        self.endpoint = OtlpEndpoint(endpoint, protocol, dict(headers or {}), timeout, insecure, compression)
        self._exporter = exporter if exporter is not None else self.endpoint.log_exporter()
        # The provider only supplies the resource and the instrumentation scope of our records;
        # no processor is attached, records go through the spool instead.
        self._provider = LoggerProvider(resource=resource or build_resource())
        sdk_logger: Any = self._provider.get_logger(SCOPE_NAME, otel_fim.__version__)  # the SDK Logger
        self._resource = sdk_logger.resource
        self._scope = sdk_logger.instrumentation_scope
        self._metrics = metrics
        self._transport = LogTransport(self._exporter)
        self._reserved: dict[int, _Reserved] = {}  # id(event) -> its write-ahead record
        self._uncommitted: list[_Reserved] = []  # reserved in this sensor batch, not yet committed
        self._reserved_lock = threading.Lock()
        self.pending_timeout = pending_timeout
        self.spool = Spool(
            Path(state_dir) / SPOOL_FILE if state_dir is not None else None,
            max_records=spool_max_records,
            max_bytes=spool_max_bytes,
            synchronous=spool_sync,
            on_drop=self._dropped,
            max_dead_letters=max_dead_letters,
            on_dead_letter_drop=self._dead_letters_dropped,
        )
        self._recover_pending(self.spool.pending())  # written ahead by a run that died
        if self.spool.depth():
            log.info(
                "otlp: %d undelivered records in %s, delivering them first", self.spool.depth(), state_dir
            )
        if metrics is not None:
            metrics.watch_spool(self.spool.depth, self.spool.size_bytes, self.spool.dead_letter_count)
        self.batch_size = batch_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.close_timeout = close_timeout
        self.delivered = 0
        self.last_delivered_ns = 0  # wall clock of the last acknowledged export (the canary asks)
        self.export_failures = 0
        self.rejected = 0  # records moved to the dead-letter table since start
        self.last_failure = ""
        self._last_drop_log = 0.0
        self._stopping = threading.Event()  # close(): drain what we can, then stop
        self._abort = threading.Event()  # close() timed out: stop waiting on backoff
        self._sender = threading.Thread(target=self._run, name="otel-fim-otlp-sender", daemon=True)
        self._sender.start()

    # -- Output protocol -------------------------------------------------------------------------

    def reserve(self, event: Event, matches: Sequence[Match]) -> None:
        """Write-ahead: called on the consumer thread as soon as the event matched, before plugins
        enrich it. The record, marked `otel_fim.plugin.status = incomplete`, is committed (not sent) at
        the end of the sensor's batch, one transaction for the batch (`end_batch`); `emit`, after
        the plugins, replaces it with the enriched record. If the agent dies in between, the next
        start sends the marked record (see `_recover_pending`)."""
        record = log_record(event, matches)
        record["attributes"][INCOMPLETE_KEY] = "incomplete"
        payload = json.dumps(record, default=str, separators=(",", ":"))
        entry = _Reserved(event, (payload, int(record["severity_number"]), time.time_ns()))
        with self._reserved_lock:
            self._reserved[id(event)] = entry
            self._uncommitted.append(entry)

    def end_batch(self) -> None:
        """Commit the batch's reservations (after each sensor poll, before the next)."""
        with self._reserved_lock:
            batch, self._uncommitted = self._uncommitted, []
            if not batch:
                return
            try:
                ids = self.spool.put_pending([e.row for e in batch])
            except Exception:
                log.exception("otlp: cannot spool %d records ahead of enrichment", len(batch))
                for entry in batch:  # `emit` will spool the enriched records the usual way
                    self._reserved.pop(id(entry.event), None)
                return
            for entry, row_id in zip(batch, ids, strict=True):
                entry.row_id = row_id

    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        with self._reserved_lock:
            entry = self._reserved.pop(id(event), None)
            if entry is not None and entry.event is event and entry.row_id is None:
                self._uncommitted.remove(entry)  # not committed yet: the enriched record replaces it
                entry = None
        if entry is not None and entry.event is event and entry.row_id is not None:
            payload = json.dumps(record, default=str, separators=(",", ":"))
            try:
                if self.spool.complete(entry.row_id, payload):
                    return
            except Exception:
                log.exception("otlp: cannot complete spooled record %d; it goes out unenriched", entry.row_id)
                return
        self.emit_record(record)

    def emit_record(self, record: Mapping[str, Any]) -> None:
        # ASCII JSON: a name the kernel gave us that is not UTF-8 must not fail the SQLite write.
        payload = json.dumps(record, default=str, separators=(",", ":"))
        try:
            self.spool.put(payload, severity=int(record["severity_number"]), observed_ns=time.time_ns())
        except Exception:
            # Disk full or spool broken: losing this record is counted and logged, never silent.
            log.exception("otlp: cannot spool record %s; it is lost", record.get("event_name"))
            if self._metrics is not None:
                self._metrics.record_spool_dropped(record.get("severity_text", ""), 1, reason="spool_error")

    def delivery_stats(self) -> dict[str, int]:
        """For the status line and the stats file."""
        return {
            "spooled": self.spool.depth(),
            "delivered": self.delivered,
            "dead_letters": self.spool.dead_letter_count(),
            "rejected": self.rejected,
            "export_failures": self.export_failures,
        }


    def delivering(self, since_ns: int) -> bool:
        """For the liveness canary: the receiver acknowledged an export since `since_ns`, or
        nothing is waiting (a wedged or unreachable receiver leaves records spooled)."""
        return self.last_delivered_ns >= since_ns or self.spool.depth() == 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the receiver acknowledged everything spooled so far. True means delivered."""
        self.spool.wake()
        return self.spool.wait_empty(timeout)

    def close(self) -> None:
        """Deliver what can be delivered within `close_timeout`; the rest stays spooled for next start."""
        self.end_batch()  # reservations never completed: kept, sent marked incomplete at next start
        self._stopping.set()
        self.spool.wake()
        self._sender.join(self.close_timeout)
        if self._sender.is_alive():
            self._abort.set()
            self._exporter.shutdown()  # aborts the exporter's own in-flight retries
            self._sender.join(5.0)
        else:
            self._exporter.shutdown()
        left = self.spool.depth()
        if left:
            log.warning(
                "otlp: %d records not yet delivered stay in the spool %s",
                left,
                self.spool.path or "(in memory: lost)",
            )
        self.spool.close()
        self._provider.shutdown()

    # -- sender ----------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        next_stale_check = time.monotonic() + 1.0
        while not self._abort.is_set():
            if time.monotonic() >= next_stale_check:
                cutoff = time.time_ns() - int(self.pending_timeout * 1e9)
                self._recover_pending(self.spool.pending(older_than_ns=cutoff))
                next_stale_check = time.monotonic() + 1.0
            batch = self.spool.peek(self.batch_size)
            if not batch:
                if self._stopping.is_set():
                    return
                self.spool.wait_not_empty(1.0)
                continue
            if self._deliver(batch):
                failures = 0
                continue
            failures += 1
            self.export_failures += 1
            if self._metrics is not None:
                self._metrics.record_export_failure("logs")
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
            delay *= random.uniform(0.8, 1.0)  # jitter, so many agents do not retry in lockstep
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "otlp: export of %d records failed (%d in a row; %d spooled): %s; retrying in %.1fs",
                    len(batch),
                    failures,
                    self.spool.depth(),
                    self.last_failure or "no reason given",
                    delay,
                )
            self._abort.wait(delay)

    def _deliver(self, batch: Sequence[SpooledRecord]) -> bool:
        """Send the batch; False when the receiver could not take it now (retry after a backoff).

        A batch the receiver refuses for good (REJECTED) or in part (partial_success) is bisected:
        each half is sent on its own, halves it accepts are acknowledged, and a single record it
        still refuses is a poison record, moved to the dead-letter table. OTLP's partial_success
        says how many records were dropped, not which: the halves of such a batch are sent again
        to find them, so the records it did accept arrive twice (at least once, as always)."""
        rows, records, kernel_ts = self._decode(batch)
        work = [(rows, records, kernel_ts)] if rows else []
        while work:
            part_rows, part_records, part_ts = work.pop()
            reply = self._transport.send(part_records)
            if reply.verdict is Verdict.RETRY:
                self.last_failure = reply.detail
                return False
            if reply.verdict is Verdict.ACCEPTED and reply.rejected <= 0:
                self._acknowledged(part_rows, part_ts)
                continue
            if len(part_rows) == 1:
                reason = "partial_success" if reply.verdict is Verdict.ACCEPTED else "rejected"
                self._poison(part_rows, reason, reply.detail)
                continue
            mid = len(part_rows) // 2
            work.append((part_rows[mid:], part_records[mid:], part_ts[mid:]))
            work.append((part_rows[:mid], part_records[:mid], part_ts[:mid]))
        return True

    def _recover_pending(self, rows: Sequence[SpooledRecord]) -> None:
        """Records written ahead whose enrichment never came: send them as they are. Each already
        says `otel_fim.plugin.status = incomplete`."""
        if not rows:
            return
        self.spool.release([r.id for r in rows])
        with self._reserved_lock:
            released = {r.id for r in rows}
            self._reserved = {k: v for k, v in self._reserved.items() if v.row_id not in released}
        log.warning(
            "otlp: %d record(s) spooled ahead of enrichment were never completed (agent killed, or a "
            "plugin took longer than %.0fs); sending them marked %s=incomplete",
            len(rows),
            self.pending_timeout,
            INCOMPLETE_KEY,
        )

    def _decode(
        self, batch: Sequence[SpooledRecord]
    ) -> tuple[list[SpooledRecord], list[Any], list[int]]:
        rows: list[SpooledRecord] = []
        records: list[Any] = []
        kernel_ts: list[int] = []
        corrupt: list[int] = []
        for row in batch:
            try:
                rec = json.loads(row.payload)
                records.append(
                    to_sdk_record(
                        rec, observed_ns=row.observed_ns, resource=self._resource, scope=self._scope
                    )
                )
                kernel_ts.append(int(rec["timestamp"]))
                rows.append(row)
            except Exception:
                # A row that cannot become a log record would block the spool forever: drop it, loudly.
                log.exception("otlp: spooled record %d is unreadable; dropping it", row.id)
                corrupt.append(row.id)
                if self._metrics is not None:
                    self._metrics.record_spool_dropped(_severity_text(row.severity), 1, reason="corrupt")
        self.spool.ack(corrupt)
        return rows, records, kernel_ts

    def _acknowledged(self, rows: Sequence[SpooledRecord], kernel_ts: Sequence[int]) -> None:
        self.spool.ack([r.id for r in rows])
        self.delivered += len(rows)
        self.last_delivered_ns = time.time_ns()
        if self._metrics is not None:
            now = time.time_ns()
            for ts in kernel_ts:
                self._metrics.record_delivery_latency((now - ts) / 1e9)

    def _poison(self, rows: Sequence[SpooledRecord], reason: str, detail: str) -> None:
        moved = self.spool.dead_letter(rows, f"{reason}: {detail}"[:1000], time.time_ns())
        self.rejected += moved
        if self._metrics is not None:
            self._metrics.record_rejected(moved, reason=reason)
        log.error(
            "otlp: the receiver refused record %s for good (%s); moved to the dead-letter table "
            "(%d there, `otel-fim spool list` shows them)",
            ",".join(str(r.id) for r in rows),
            detail or reason,
            self.spool.dead_letter_count(),
        )

    def _dead_letters_dropped(self, dropped: Sequence[SpooledRecord]) -> None:
        if self._metrics is not None:
            for row in dropped:
                self._metrics.record_spool_dropped(_severity_text(row.severity), 1, reason="dead_letter_full")
        log.error(
            "otlp: dead-letter table full (%d): gave up %d poison record(s)",
            self.spool.max_dead_letters,
            len(dropped),
        )

    def _dropped(self, dropped: Sequence[SpooledRecord]) -> None:
        if self._metrics is not None:
            for row in dropped:
                self._metrics.record_spool_dropped(_severity_text(row.severity), 1, reason="spool_full")
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # one line per 10 s, with the running total
            self._last_drop_log = now
            oldest = min(r.observed_ns for r in dropped)
            log.error(
                "otlp: spool full (%d records / %d bytes): dropped %d record(s) of severity %s,"
                " spooled at %s; %d dropped since start",
                self.spool.max_records,
                self.spool.max_bytes,
                len(dropped),
                ",".join(sorted({_severity_text(r.severity) for r in dropped})),
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(oldest / 1e9)),
                self.spool.dropped_total,
            )


@dataclass(slots=True)
class _Reserved:
    event: Event
    row: tuple[str, int, int]  # payload, severity, observed_ns
    row_id: int | None = None  # once committed


def _severity_text(number: int) -> str:
    for name, num in SEVERITY_NUMBER.items():
        if num == number:
            return SEVERITY_TEXT[name]
    return str(number)
