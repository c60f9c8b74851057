"""Customer and product tables: validate, impute, encrypt personal columns, upsert.

These tables are small next to the event log (one row per customer or product), so they
go through pandas and scikit-learn (imputation) rather than pure SQL. Re-ingesting a table
updates the columns it carries for the IDs it names and leaves the other columns alone.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from tailorcast.errors import ConfigError, DataError
from tailorcast.ingest.config import IngestConfig
from tailorcast.ingest.events import IngestSummary, resolve_columns
from tailorcast.ingest.impute import impute
from tailorcast.ingest.readers import load_source
from tailorcast.privacy import Keys
from tailorcast.store import Store, quote_ident

__all__ = ["ingest_table"]

TableKind = Literal["users", "items"]
_BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "t": True, "f": False}
_OWN_COLUMNS = {"batch_id", "updated_at"}


def _infer(series: pd.Series) -> tuple[pd.Series, str]:
    """Numbers become DOUBLE, true/false words BOOLEAN, everything else stays VARCHAR."""
    values = series.dropna()
    values = values[values.astype(str).str.strip() != ""]
    if values.empty:
        return series.astype(object).where(series.notna(), None), "VARCHAR"
    numeric = pd.to_numeric(values, errors="coerce")
    text = values.astype(str).str.strip()
    # Codes are not numbers: a leading zero (postal codes) or more than 15 digits (EANs)
    # would be lost in a DOUBLE, so such columns stay text.
    code_like = bool(text.str.match(r"^[+-]?0\d").any() or (text.str.len() > 15).any())
    if not code_like and numeric.notna().all() and np.isfinite(numeric.to_numpy(dtype=float)).all():
        return pd.to_numeric(
            series.where(series.astype(str).str.strip() != ""), errors="coerce"
        ), "DOUBLE"
    lowered = values.astype(str).str.strip().str.lower()
    if lowered.isin(list(_BOOL_TEXT)).all():
        mapped = series.astype(object).map(
            lambda v: (
                None
                if v is None or (isinstance(v, float) and np.isnan(v))
                else _BOOL_TEXT.get(str(v).strip().lower())
            )
        )
        return mapped, "BOOLEAN"
    return series.astype(object).where(series.notna(), None), "VARCHAR"


class _TableIngest:
    def __init__(
        self, store: Store, kind: TableKind, config: IngestConfig, keys: Keys | None
    ) -> None:
        self.store = store
        self.kind = kind
        self.config = config
        self.keys = keys
        self.id_col = "user_id" if kind == "users" else "item_id"
        self.table_cfg = config.users if kind == "users" else config.items
        self.pseudonymize = kind == "users" and config.privacy.pseudonymize

    def run(self, source: Any, label: str | None) -> IngestSummary:
        started = time.perf_counter()
        con = self.store.con
        src = load_source(con, source, table="_raw_table", label=label)
        canonical: tuple[str, ...] = (
            ("user_id",) if self.kind == "users" else ("item_id", "category", "price")
        )
        mapped, extras = resolve_columns(src, self.table_cfg.columns, canonical)
        if self.id_col not in mapped:
            raise DataError(
                f"required column {self.id_col} missing after mapping; columns found: "
                f"{', '.join(src.columns)} (use --map SOURCE={self.id_col})",
                source=src.label,
            )
        rename = {v: k for k, v in mapped.items()}
        # The line number travels beside the frame, never as a column a source could clash with.
        line_col = "_line"
        while line_col in src.columns:
            line_col = "_" + line_col
        frame = con.sql(
            f"SELECT {src.line_sql} AS {quote_ident(line_col)}, r.* FROM {quote_ident(src.table)} r"
        ).df()
        con.execute(f"DROP TABLE IF EXISTS {quote_ident(src.table)}")
        self.lines = frame[line_col].astype("int64")
        frame = frame[list(src.columns)].rename(columns=rename)
        frame.columns = pd.Index([str(c).strip() for c in frame.columns])
        taken = {c.lower() for c in frame.columns if c not in extras}
        for col in list(frame.columns):
            if col.lower() in _OWN_COLUMNS:
                new = f"{col}_src"
                if new.lower() in taken:
                    raise DataError(
                        f"column {col!r} clashes with a column of the store", source=src.label
                    )
                frame = frame.rename(columns={col: new})
        summary = IngestSummary(
            kind=self.kind, source=src.label, batch_id=self.store.next_batch_id()
        )
        rejects: list[dict[str, Any]] = [
            {
                "line": r.line,
                "reason": r.reason,
                "column": r.column,
                "raw": {"text": None},
                "raw_text": r.raw,
            }
            for r in src.parse_rejects
        ]
        frame, bad = self._validate(frame)
        rejects.extend(bad)
        # Later rows for the same ID win (a table export may list a product twice).
        before = len(frame)
        frame = frame.drop_duplicates(subset=[self.id_col], keep="last")
        summary.duplicates = before - len(frame)
        types: dict[str, str] = {}
        pii = set(self._pii_columns(frame))
        for col in frame.columns:
            if self.kind == "items" and col == "price":
                # Parsed and checked in _validate: a number even when its text is long
                # (0.30000000000000004 would look like a code to _infer and turn text).
                types[col] = "DOUBLE"
            elif col != self.id_col and col not in pii:
                frame[col], types[col] = _infer(frame[col])
        result = impute(
            frame,
            dict(self.table_cfg.impute),
            table=self.kind,
            id_column=self.id_col,
        )
        lines: dict[Any, int] = {k: int(v) for k, v in self.lines.items()}
        for idx, row in result.dropped.iterrows():
            rejects.append(
                {
                    "line": lines[idx],
                    "reason": "missing value (imputation: drop)",
                    "column": None,
                    "raw": row.drop(labels=["reason"]).to_dict(),
                    "raw_text": None,
                }
            )
        clean = result.frame
        summary.imputations = [
            {
                "table": r.table,
                "column": r.column,
                "strategy": r.strategy,
                "n_imputed": r.n_imputed,
                "fill_value": r.fill_value,
            }
            for r in result.records
        ]
        with self.store.transaction():
            self._upsert(clean, summary, types)
            summary.rejected = self._store_rejects(rejects, src.label, summary.batch_id)
            summary.rows_read = src.rows_read
            summary.accepted = len(clean)
            counts: dict[str, int] = {}
            for r in rejects:
                counts[r["reason"]] = counts.get(r["reason"], 0) + 1
            summary.rejected_by_reason = dict(
                sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            for rec in summary.imputations:
                con.execute(
                    "INSERT INTO imputations VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        summary.batch_id,
                        rec["table"],
                        rec["column"],
                        rec["strategy"],
                        rec["n_imputed"],
                        rec["fill_value"],
                    ],
                )
            summary.seconds = round(time.perf_counter() - started, 3)
            summary.check()
            now = datetime.now(UTC).replace(tzinfo=None)
            con.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    summary.batch_id,
                    self.kind,
                    summary.source,
                    now - timedelta(seconds=summary.seconds),
                    now,
                    summary.rows_read,
                    summary.accepted,
                    summary.rejected,
                    summary.duplicates,
                    json.dumps(summary.to_dict(), default=str),
                ],
            )
            self.store.audit(
                "ingest",
                {
                    "kind": self.kind,
                    "source": summary.source,
                    "batch_id": summary.batch_id,
                    "accepted": summary.accepted,
                    "rejected": summary.rejected,
                },
            )
        return summary

    def _validate(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        ids = (
            frame[self.id_col]
            .astype(object)
            .map(
                lambda v: (
                    None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
                )
            )
        )
        frame = frame.assign(**{self.id_col: ids})
        reason = pd.Series(None, index=frame.index, dtype=object)
        column = pd.Series(None, index=frame.index, dtype=object)
        max_len = self.config.cleaning.max_id_length
        parsed_price: pd.Series | None = None

        def flag(mask: pd.Series, why: str, col: str) -> None:
            fresh = mask & reason.isna()
            reason[fresh] = why
            column[fresh] = col

        flag(ids.isna() | (ids == ""), f"missing {self.id_col}", self.id_col)
        flag(ids.fillna("").str.len() > max_len, f"{self.id_col} too long", self.id_col)
        if self.kind == "items" and "price" in frame.columns:
            text = frame["price"].astype(object)
            present = text.notna() & (text.astype(str).str.strip() != "")
            price = pd.to_numeric(text.where(present), errors="coerce")
            flag(present & price.isna(), "price is not a number", "price")
            flag(present & ~np.isfinite(price.fillna(0.0)), "price is not finite", "price")
            flag(price < 0, "negative price", "price")
            parsed_price = price.where(np.isfinite(price.fillna(0.0)))
        bad_mask = reason.notna()
        bad = []  # raw rows as read: a refused value is shown as it was, not as parsed
        for idx in frame.index[bad_mask]:
            row = frame.loc[idx]
            raw = {k: (None if pd.isna(v) else str(v)) for k, v in row.items()}
            bad.append(
                {
                    "line": int(self.lines[idx]),
                    "reason": reason[idx],
                    "column": column[idx],
                    "raw": raw,
                    "raw_text": None,
                }
            )
        if parsed_price is not None:
            frame = frame.assign(price=parsed_price)
        return frame[~bad_mask], bad

    def _pii_columns(self, frame: pd.DataFrame) -> list[str]:
        if self.kind != "users":
            return []
        wanted = {c.lower() for c in self.config.privacy.pii_columns}
        return [c for c in frame.columns if c.lower() in wanted]

    def _upsert(
        self, frame: pd.DataFrame, summary: IngestSummary, inferred: dict[str, str]
    ) -> None:
        store, con = self.store, self.store.con
        out = pd.DataFrame(index=frame.index)
        types: dict[str, str] = {}
        pii = set(self._pii_columns(frame))
        if pii and self.keys is None:
            raise ConfigError("encrypting personal columns needs the store keys")
        ids = frame[self.id_col].astype(str).tolist()
        if self.pseudonymize:
            assert self.keys is not None
            pseudo = self.keys.pseudonymizer().many(ids)
            out[self.id_col] = pseudo
            self._identities(ids, pseudo)
        else:
            out[self.id_col] = ids
        types[self.id_col] = "VARCHAR"
        for col in frame.columns:
            if col == self.id_col:
                continue
            if col in pii:
                assert self.keys is not None
                values = [
                    None if pd.isna(v) or str(v).strip() == "" else str(v)
                    for v in frame[col].tolist()
                ]
                out[col] = self.keys.cipher().encrypt_many(values, f"{self.kind}.{col}")
                types[col] = "BLOB"
            else:
                out[col], types[col] = frame[col], inferred[col]
        existing = store.columns(self.kind)
        for col, kind in types.items():
            have = next((v for k, v in existing.items() if k.lower() == col.lower()), None)
            if have is not None and have != kind and kind != "VARCHAR" and have == "VARCHAR":
                types[col] = "VARCHAR"  # the store already holds text here: keep it text
            elif have is not None and have != kind:
                con.execute(
                    f"ALTER TABLE {self.kind} ALTER COLUMN {quote_ident(col)} TYPE VARCHAR"
                    if kind == "VARCHAR" or (have == "BLOB" and kind != "BLOB")
                    else f"ALTER TABLE {self.kind} ALTER COLUMN {quote_ident(col)} TYPE {kind}"
                )
        store.add_columns(self.kind, types)
        arrow = pa.Table.from_pandas(out.reset_index(drop=True), preserve_index=False)
        con.register("_upsert_arrow", arrow)
        try:
            cols = list(types)
            casts = ", ".join(
                f"CAST(n.{quote_ident(c)} AS {store.columns(self.kind)[c]}) AS {quote_ident(c)}"
                for c in cols
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _upsert AS SELECT {casts} FROM _upsert_arrow n"
            )
        finally:
            con.unregister("_upsert_arrow")
        now = datetime.now(UTC).replace(tzinfo=None)
        key = quote_ident(self.id_col)
        sets = ", ".join(f"{quote_ident(c)} = n.{quote_ident(c)}" for c in cols if c != self.id_col)
        if sets:
            con.execute(
                f"UPDATE {self.kind} SET {sets}, batch_id = $b, updated_at = $now "
                f"FROM _upsert n WHERE {self.kind}.{key} = n.{key}",
                {"b": summary.batch_id, "now": now},
            )
        col_list = ", ".join(quote_ident(c) for c in cols)
        con.execute(
            f"INSERT INTO {self.kind} ({col_list}, batch_id, updated_at) "
            f"SELECT {col_list}, $b, $now FROM _upsert n "
            f"WHERE n.{key} NOT IN (SELECT {key} FROM {self.kind})",
            {"b": summary.batch_id, "now": now},
        )
        con.execute("DROP TABLE _upsert")

    def _identities(self, ids: list[str], pseudo: list[str]) -> None:
        assert self.keys is not None
        con = self.store.con
        known = {
            str(r[0])
            for r in con.execute(
                "SELECT pseudonym FROM identities WHERE pseudonym IN (SELECT unnest($p))",
                {"p": pseudo},
            ).fetchall()
        }
        new = [(p, i) for p, i in zip(pseudo, ids, strict=True) if p not in known]
        if new:
            cipher = self.keys.cipher()
            con.executemany(
                "INSERT INTO identities VALUES (?, ?)",
                [(p, cipher.encrypt(i, "identity")) for p, i in new],
            )

    def _store_rejects(self, rejects: list[dict[str, Any]], label: str, batch_id: int) -> int:
        if not rejects:
            return 0
        cipher = self.keys.cipher() if self.keys is not None else None
        pseudonymizer = self.keys.pseudonymizer() if self.pseudonymize and self.keys else None
        known = set(
            self.store.con.execute(
                "SELECT line, reason, CAST(raw AS VARCHAR) FROM rejects "
                "WHERE kind = ? AND source = ?",
                [self.kind, label],
            ).fetchall()
        )
        pii = (
            {c.lower() for c in self.config.privacy.pii_columns} if self.kind == "users" else set()
        )
        rows = []
        for r in rejects:
            raw = dict(r["raw"])
            for k in list(raw):
                if k.lower() in pii and raw[k] is not None:
                    raw[k] = "[personal data withheld]"
                if k == self.id_col and pseudonymizer is not None and raw[k]:
                    raw[k] = pseudonymizer.one(str(raw[k]))
            text = r.get("raw_text")
            blob = cipher.encrypt(text, "reject") if cipher is not None and text else None
            if text and pseudonymizer is not None:
                raw = {
                    "text": None,
                    "note": "withheld: unparseable line; original encrypted",
                    # keyed, so different withheld lines are told apart without revealing them
                    "fingerprint": pseudonymizer.one(text)[2:18],
                }
            elif text:
                raw = {"text": text[:2000]}
            raw_json = json.dumps(raw, default=str, ensure_ascii=False)
            # the same data ingested again adds no second copy of its rejects
            if (r["line"], r["reason"], raw_json) in known:
                continue
            rows.append(
                (
                    batch_id,
                    self.kind,
                    label,
                    r["line"],
                    r["reason"],
                    r["column"],
                    raw_json,
                    blob,
                )
            )
        if rows:
            self.store.con.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rejects)


def ingest_table(
    store: Store,
    kind: TableKind,
    source: Any,
    *,
    config: IngestConfig | None = None,
    keys: Keys | None = None,
    label: str | None = None,
) -> IngestSummary:
    """Ingest a customers (``kind="users"``) or products (``kind="items"``) table.

    Example::

        ingest_table(store, "items", "products.csv", keys=keys)
    """
    cfg = config or IngestConfig()
    if keys is not None:
        store.bind_keys(keys)
    if kind == "users":
        mode = "true" if cfg.privacy.pseudonymize else "false"
        if store.meta("pseudonymize") is None:
            store.set_meta("pseudonymize", mode)
        elif store.meta("pseudonymize") != mode:
            raise ConfigError(
                f"the store at {store.folder} was created with pseudonymize="
                f"{store.meta('pseudonymize')}; it cannot change"
            )
    job = _TableIngest(store, kind, cfg, keys)
    try:
        return job.run(source, label)
    finally:
        store.con.execute("DROP TABLE IF EXISTS _raw_table")
        store.con.execute("DROP TABLE IF EXISTS _upsert")
