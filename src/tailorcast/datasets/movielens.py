"""Load MovieLens 100K from GroupLens original files or RecBole atomic files.

Every rating becomes a ``purchase`` event (a rating means the customer chose the movie), so the
data set plugs into the same pipeline as a shop's events; the star rating is kept in ``rating``.

Example::

    ml = load_movielens("data/ml-100k")
    ml.events.head()        # user_id, item_id, event_type, timestamp, rating
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from tailorcast.errors import DataError

__all__ = ["MovieLens", "load_movielens"]

#: The 19 genre flags of ``u.item``, in file order.
GENRES: Final = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_YEAR_IN_TITLE: Final = re.compile(r"\s*\((\d{4})\)\s*$")
_GROUPLENS: Final = ("u.data", "u.item", "u.user")
# RecBole names -> ours; a header field is ``name:type``.
_ATOMIC_RENAMES: Final = {"movie_title": "title", "class": "genres"}


@dataclass(frozen=True, eq=False)
class MovieLens:
    """MovieLens ratings as canonical tables.

    Attributes:
        events: ``user_id`` (str), ``item_id`` (str), ``event_type`` (``"purchase"`` for every
            rating), ``timestamp`` (int Unix seconds), ``rating`` (float, 1-5).
        users: ``user_id``, ``age`` (int), ``gender``, ``occupation``, ``zip_code`` (str).
        items: ``item_id``, ``title``, ``release_year`` (nullable int), ``category`` (the first
            genre), ``genres`` (space-separated).
    """

    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


def load_movielens(path: str | Path) -> MovieLens:
    """Load MovieLens 100K from the folder ``path``.

    The folder holds either the GroupLens originals (``u.data``, ``u.item``, ``u.user``) or
    RecBole atomic files (``<name>.inter``, ``<name>.item``, ``<name>.user``).

    Raises:
        DataError: the folder or one of its files is missing, or a file cannot be parsed (the
            message names the file and, where it applies, the line and column).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError("MovieLens folder not found", source=str(folder))
    if (folder / "u.data").is_file():
        return _load_grouplens(folder)
    inter = sorted(folder.glob("*.inter"))
    if inter:
        return _load_atomic(inter[0])
    raise DataError(
        "no MovieLens files: expected u.data, u.item, u.user (GroupLens) "
        "or <name>.inter, <name>.item, <name>.user (RecBole atomic)",
        source=str(folder),
    )


def _read(file: Path, *, sep: str, names: list[str] | None, encoding: str) -> pd.DataFrame:
    """Read a delimited file as strings, exactly as written (no quoting, no NA guessing).

    With ``names`` the file has no header and must have exactly those fields; without, the
    first line is a RecBole header of ``name:type`` fields.
    """
    if not file.is_file():
        raise DataError("file not found", source=str(file))
    try:
        frame = pd.read_csv(
            file,
            sep=sep,
            header=None if names else 0,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            encoding=encoding,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse: {str(exc).strip()}", source=str(file)) from None
    if names is None:
        frame.columns = pd.Index([str(c).split(":", 1)[0].strip() for c in frame.columns])
    elif frame.shape[1] != len(names):
        raise DataError(
            f"expected {len(names)} fields separated by {sep!r}, found {frame.shape[1]}",
            source=str(file),
        )
    else:
        frame.columns = pd.Index(names)
    return frame


def _require(frame: pd.DataFrame, file: Path, columns: tuple[str, ...]) -> None:
    for column in columns:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns))
            raise DataError(f"missing column (found: {found})", source=str(file), column=column)


def _numbers(frame: pd.DataFrame, column: str, file: Path, first_line: int) -> pd.Series:
    """``column`` as floats; a value that is not a number names its line."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna().to_numpy().nonzero()[0]
    if len(bad):
        raw = frame[column].iloc[bad[0]]
        raise DataError(
            f"not a number: {raw!r}", source=str(file), row=first_line + int(bad[0]), column=column
        )
    return values.astype("float64")


def _events(frame: pd.DataFrame, file: Path, first_line: int) -> pd.DataFrame:
    rating = _numbers(frame, "rating", file, first_line)
    timestamp = _numbers(frame, "timestamp", file, first_line)
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].str.strip().astype(str),
            "item_id": frame["item_id"].str.strip().astype(str),
            "event_type": "purchase",
            "timestamp": timestamp.astype("int64"),
            "rating": rating,
        }
    )


def _users(frame: pd.DataFrame, file: Path, first_line: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].str.strip().astype(str),
            "age": _numbers(frame, "age", file, first_line).astype("int64"),
            "gender": frame["gender"].astype(str),
            "occupation": frame["occupation"].astype(str),
            "zip_code": frame["zip_code"].astype(str),
        }
    )


def _items(
    item_id: pd.Series, title: pd.Series, year: pd.Series, genres: pd.Series
) -> pd.DataFrame:
    genres = genres.str.strip().replace("", "unknown")
    return pd.DataFrame(
        {
            "item_id": item_id.str.strip().astype(str),
            "title": title.astype(str),
            # Unknown years are written as "unknown" (or "unkonwn") or left empty.
            "release_year": pd.to_numeric(year, errors="coerce").astype("Int64"),
            "category": genres.str.split(" ").str[0].astype(str),
            "genres": genres.astype(str),
        }
    )


def _load_grouplens(folder: Path) -> MovieLens:
    data, item, user = (folder / name for name in _GROUPLENS)
    ratings = _read(
        data, sep="\t", names=["user_id", "item_id", "rating", "timestamp"], encoding="utf-8"
    )
    movies = _read(
        item,
        sep="|",
        names=["item_id", "title", "release_date", "video_release_date", "url", *GENRES],
        encoding="latin-1",
    )
    people = _read(
        user,
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip_code"],
        encoding="latin-1",
    )
    flags = movies[list(GENRES)].apply(lambda col: col.str.strip() == "1")
    genres = flags.apply(
        lambda row: " ".join(g for g, on in zip(GENRES, row, strict=True) if on), axis=1
    )
    # "Toy Story (1995)" with release date "01-Jan-1995" -> title "Toy Story", year 1995.
    year_in_title = movies["title"].str.extract(_YEAR_IN_TITLE, expand=False)
    year = movies["release_date"].str.strip().str[-4:].where(lambda y: y.str.isdigit())
    items = _items(
        movies["item_id"],
        movies["title"].str.replace(_YEAR_IN_TITLE, "", regex=True).str.strip(),
        year.fillna(year_in_title),
        genres if len(movies) else pd.Series([], dtype=str),
    )
    return MovieLens(_events(ratings, data, 1), _users(people, user, 1), items)


def _load_atomic(inter: Path) -> MovieLens:
    item, user = inter.with_suffix(".item"), inter.with_suffix(".user")
    ratings = _read(inter, sep="\t", names=None, encoding="utf-8")
    _require(ratings, inter, ("user_id", "item_id", "rating", "timestamp"))
    movies = _read(item, sep="\t", names=None, encoding="utf-8").rename(columns=_ATOMIC_RENAMES)
    _require(movies, item, ("item_id", "title", "release_year", "genres"))
    people = _read(user, sep="\t", names=None, encoding="utf-8")
    _require(people, user, ("user_id", "age", "gender", "occupation", "zip_code"))
    items = _items(movies["item_id"], movies["title"], movies["release_year"], movies["genres"])
    return MovieLens(_events(ratings, inter, 2), _users(people, user, 2), items)
