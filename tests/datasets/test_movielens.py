from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.datasets import MovieLens, load_movielens
from tailorcast.errors import DataError

SHARED = Path("/work/shared/data/ml-100k")

U_DATA = "1\t10\t4\t881250949\n2\t10\t5\t891717742\n2\t20\t1\t878887116\n"
# id | title | release date | video release date | url | 19 genre flags
U_ITEM = (
    "10|Café au lait (1993)|01-Jan-1993||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|1|0|0|0|0\n"
    "20|Mystery Film (1998)|||http://y|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "30|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|T8H1N\n"

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t881250949\n2\t10\t5\t891717742\n2\t20\t1\t878887116\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tCafé au lait\t1993\tComedy Romance\n"
    "20\tMystery Film\t1998\t\n"
    "30\tunknown\tunknown\tunknown\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\tT8H1N\n"
)


def write_grouplens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    (folder / "u.user").write_text(U_USER)
    return folder


def write_atomic(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.inter").write_text(INTER, encoding="utf-8")
    (folder / "tiny.item").write_text(ITEM, encoding="utf-8")
    (folder / "tiny.user").write_text(USER, encoding="utf-8")
    return folder


@pytest.mark.skipif(not SHARED.is_dir(), reason="MovieLens 100K atomic files not available")
def test_shared_movielens_100k() -> None:
    ml = load_movielens(SHARED)
    assert isinstance(ml, MovieLens)
    assert len(ml.events) == 100_000
    assert ml.events["user_id"].nunique() == 943
    assert ml.events["item_id"].nunique() == 1682
    assert len(ml.users) == 943
    assert len(ml.items) == 1682
    assert list(ml.events.columns) == ["user_id", "item_id", "event_type", "timestamp", "rating"]
    assert list(ml.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert list(ml.items.columns) == ["item_id", "title", "release_year", "category", "genres"]
    assert (ml.events["event_type"] == "purchase").all()
    assert ml.events["timestamp"].dtype == np.int64
    assert ml.events["rating"].dtype == np.float64
    assert ml.events["rating"].between(1, 5).all()
    when = pd.to_datetime(ml.events["timestamp"], unit="s")
    assert when.min().year == 1997
    assert when.max().year == 1998
    assert set(ml.events["user_id"]) == set(ml.users["user_id"])
    assert set(ml.events["item_id"]) == set(ml.items["item_id"])
    assert ml.users["age"].dtype == np.int64
    assert set(ml.users["gender"]) == {"M", "F"}
    toy_story = ml.items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story"
    assert toy_story["release_year"] == 1995
    assert toy_story["genres"] == "Animation Children's Comedy"
    assert toy_story["category"] == "Animation"
    first_genre = ml.items["genres"].str.split(" ").str[0]
    assert (ml.items["category"] == first_genre).all()
    assert ml.items["release_year"].isna().sum() <= 2


def test_grouplens_files(tmp_path: Path) -> None:
    ml = load_movielens(write_grouplens(tmp_path / "ml"))
    expected_events = pd.DataFrame(
        {
            "user_id": ["1", "2", "2"],
            "item_id": ["10", "10", "20"],
            "event_type": ["purchase"] * 3,
            "timestamp": np.array([881250949, 891717742, 878887116], dtype=np.int64),
            "rating": [4.0, 5.0, 1.0],
        }
    )
    pd.testing.assert_frame_equal(ml.events, expected_events)
    items = ml.items.set_index("item_id")
    assert items.loc["10", "title"] == "Café au lait"  # latin-1 decoded
    assert items.loc["10", "release_year"] == 1993
    assert items.loc["10", "genres"] == "Comedy Romance"
    assert items.loc["10", "category"] == "Comedy"
    assert items.loc["20", "release_year"] == 1998  # no release date: year from the title
    assert items.loc["20", "genres"] == "unknown"  # no genre flag set
    assert pd.isna(items.loc["30", "release_year"])
    assert ml.users["zip_code"].tolist() == ["85711", "T8H1N"]
    assert ml.users["age"].tolist() == [24, 53]


def test_atomic_and_grouplens_load_the_same(tmp_path: Path) -> None:
    grouplens = load_movielens(write_grouplens(tmp_path / "gl"))
    atomic = load_movielens(write_atomic(tmp_path / "atomic"))
    pd.testing.assert_frame_equal(atomic.events, grouplens.events)
    pd.testing.assert_frame_equal(atomic.users, grouplens.users)
    pd.testing.assert_frame_equal(atomic.items, grouplens.items)


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        load_movielens(missing)


def test_folder_without_movielens_files(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match=r"u\.data"):
        load_movielens(tmp_path)


@pytest.mark.parametrize("name", ["u.item", "u.user"])
def test_missing_grouplens_file(tmp_path: Path, name: str) -> None:
    folder = write_grouplens(tmp_path / "ml")
    (folder / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as info:
        load_movielens(folder)
    assert info.value.source == str(folder / name)


@pytest.mark.parametrize("name", ["tiny.item", "tiny.user"])
def test_missing_atomic_file(tmp_path: Path, name: str) -> None:
    folder = write_atomic(tmp_path / "ml")
    (folder / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_movielens(folder)


def test_bad_rating_names_line_and_column(tmp_path: Path) -> None:
    folder = write_grouplens(tmp_path / "ml")
    (folder / "u.data").write_text(U_DATA + "3\t10\tfive\t881250949\n")
    with pytest.raises(DataError, match="five") as info:
        load_movielens(folder)
    assert info.value.row == 4
    assert info.value.column == "rating"


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    folder = write_grouplens(tmp_path / "ml")
    (folder / "u.data").write_text("1,10,4,881250949\n")
    with pytest.raises(DataError, match="expected 4 fields"):
        load_movielens(folder)


def test_atomic_missing_column(tmp_path: Path) -> None:
    folder = write_atomic(tmp_path / "ml")
    (folder / "tiny.inter").write_text(INTER.replace("rating:float", "stars:float"))
    with pytest.raises(DataError, match="rating") as info:
        load_movielens(folder)
    assert info.value.column == "rating"
