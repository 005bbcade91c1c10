"""Dataset formats: detection and parsing from tiny fixtures, and the real shared files when present."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsi_amf.datasets import detect_format, load_dataset, load_images
from wsi_amf.errors import DatasetError, OptionError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIDOG_HEADER = ["image_id", "filename", "coordinateX", "coordinateY", "Tumor", "Scanner", "Origin", "Species",
                "expert1", "expert2", "expert3", "majority"]


def png(path: Path, value: int, size: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def midog_rows() -> list[list[object]]:
    return [
        ["1.png", "201.tiff", 10, 20, "canine lung cancer", "3D Histech", "VMU Vienna", "Canine", "NMF", "NMF", "", "NMF"],
        ["2.png", "201.tiff", 30, 40, "canine lung cancer", "3D Histech", "VMU Vienna", "Canine", "AMF", "AMF", "", "AMF"],
        ["3.png", "305.tiff", 50, 60, "human melanoma", "Hamammatsu XR", "UMC Utrecht", "Human", "NMF", "AMF", "AMF", "AMF"],
    ]


def test_midog25_table_and_image_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = write_csv(tmp_path / "MIDOG25.csv", MIDOG_HEADER, midog_rows())
    for i, size in ((1, 128), (2, 128), (3, 64)):
        png(tmp_path / "images" / f"{i}.png", 10 * i, size)
    assert detect_format(table) == ("midog25", table)
    assert detect_format(tmp_path) == ("midog25", table)
    with caplog.at_level(logging.INFO, logger="wsi_amf.datasets"):
        ds = load_dataset(table)
    assert ds.format == "midog25" and len(ds) == 3
    assert ds.labels.tolist() == [0, 1, 1]
    assert ds.groups.tolist() == ["201.tiff", "201.tiff", "305.tiff"]
    assert set(ds.domains) == {"Tumor", "Scanner", "Species"}
    assert ds.domains["Scanner"].tolist()[2] == "Hamammatsu XR"
    assert ds.images.shape == (3, 128, 128, 3) and ds.images.dtype == np.uint8
    assert int(ds.images[2].mean()) == 30  # the 64 px image, resized
    assert "resized 1 images from 64x64 to 128x128" in caplog.text


def test_midog25_extra_domain_column_and_group_column(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "t.csv", MIDOG_HEADER, midog_rows())
    for i in (1, 2, 3):
        png(tmp_path / f"{i}.png", i)
    ds = load_dataset(table, domain_column="Origin", group_column="Tumor")
    assert ds.domains["Origin"].tolist() == ["VMU Vienna", "VMU Vienna", "UMC Utrecht"]
    assert ds.groups.tolist()[0] == "canine lung cancer"
    with pytest.raises(OptionError, match="--domain-column Nope"):
        load_dataset(table, domain_column="Nope")
    with pytest.raises(DatasetError, match="column 'Nope' is missing"):
        load_dataset(table, group_column="Nope")


def test_midog25_bad_label_names_the_row(tmp_path: Path) -> None:
    rows = midog_rows()
    rows[1][-1] = "maybe"
    table = write_csv(tmp_path / "t.csv", MIDOG_HEADER, rows)
    for i in (1, 2, 3):
        png(tmp_path / f"{i}.png", i)
    with pytest.raises(DatasetError, match=r"t.csv row 3: label 'maybe'"):
        load_dataset(table)


def test_amibr_folder(tmp_path: Path) -> None:
    header = ["", "slide", "dataset", "uid", "x", "y", "expert1_label", "expert2_label", "expert1_atypical",
              "expert2_atypical", "expert3_atypical", "majority_atypical"]
    rows = [
        [0, "003.tiff", "MIDOG21", 22, 1, 2, "NMF metaphase", "NMF metaphase", False, False, False, False],
        [1, "003.tiff", "MIDOG21", 25, 1, 2, "AMF segregation", "AMF segregation", True, True, False, True],
        [2, "007.tiff", "TUPAC16", 22, 1, 2, "NMF prophase", "NMF prophase", False, False, False, False],
    ]
    write_csv(tmp_path / "AMI-BR.csv", header, rows)
    png(tmp_path / "patches" / "normal" / "MIDOG21_22.png", 1)
    png(tmp_path / "patches" / "atypical" / "MIDOG21_25.png", 2)
    png(tmp_path / "patches" / "normal" / "TUPAC16_22.png", 3)
    assert detect_format(tmp_path)[0] == "amibr"
    ds = load_dataset(tmp_path)
    assert ds.labels.tolist() == [0, 1, 0]
    assert ds.groups.tolist() == ["MIDOG21/003.tiff", "MIDOG21/003.tiff", "TUPAC16/007.tiff"]
    assert ds.domains["dataset"].tolist() == ["MIDOG21", "MIDOG21", "TUPAC16"]
    assert [int(im.mean()) for im in ds.images] == [1, 2, 3]


@pytest.mark.parametrize("names", [("atypical", "normal"), ("AMF", "NMF")])
def test_class_folders(tmp_path: Path, names: tuple[str, str]) -> None:
    png(tmp_path / names[0] / "a.png", 200)
    png(tmp_path / names[0] / "sub" / "b.jpg", 100)
    png(tmp_path / names[1] / "c.png", 50)
    assert detect_format(tmp_path)[0] == "folder"
    ds = load_dataset(tmp_path)
    assert sorted(zip(ds.groups.tolist(), ds.labels.tolist())) == [(f"{names[0]}/a", 1), (f"{names[0]}/sub/b", 1), (f"{names[1]}/c", 0)]
    assert len(set(ds.groups.tolist())) == 3  # every image its own group
    with pytest.raises(OptionError, match="--group-column"):
        load_dataset(tmp_path, group_column="slide")


def test_generic_csv(tmp_path: Path) -> None:
    png(tmp_path / "x" / "1.png", 1)
    png(tmp_path / "x" / "2.png", 2)
    absolute = png(tmp_path / "elsewhere" / "3.png", 3)
    table = write_csv(tmp_path / "labels.csv", ["path", "label", "group", "domain", "site"],
                      [["x/1.png", "atypical", "s1", "A", "k"], ["x/2.png", "0", "s1", "B", "k"], [absolute, "True", "s2", "A", "m"]])
    assert detect_format(table) == ("csv", table)
    ds = load_dataset(table, domain_column="site")
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.groups.tolist() == ["s1", "s1", "s2"]
    assert ds.domains["domain"].tolist() == ["A", "B", "A"]
    assert ds.domains["site"].tolist() == ["k", "k", "m"]
    no_group = write_csv(tmp_path / "plain.csv", ["path", "label"], [["x/1.png", "AMF"], ["x/2.png", "NMF"]])
    ds2 = load_dataset(no_group, format="csv")
    assert len(set(ds2.groups.tolist())) == 2 and ds2.domains == {}


def test_missing_image_is_one_line(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "labels.csv", ["path", "label"], [["gone.png", "1"], ["also.png", "0"]])
    with pytest.raises(DatasetError, match=r"gone.png: no such file \(2 of 2 listed images are missing\)"):
        load_dataset(table)


def test_undetectable_inputs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no label table"):
        load_dataset(tmp_path / "empty")
    odd = write_csv(tmp_path / "odd.csv", ["a", "b"], [[1, 2]])
    with pytest.raises(DatasetError, match="unknown table"):
        load_dataset(odd)
    with pytest.raises(OptionError, match="--format 'tiff'"):
        load_dataset(odd, format="tiff")


def test_load_images_reads_tiff_pages(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((128, 128, 3), v, dtype=np.uint8)) for v in (5, 6, 7)]
    pages[0].save(tmp_path / "stack.tiff", save_all=True, append_images=pages[1:])
    out = load_images([tmp_path / "stack.tiff"] * 2, pages=[2, 0])
    assert [int(x.mean()) for x in out] == [7, 5]


# --------------------------------------------------------------------------------------- shared data

AMIBR = SHARED / "amibr"
MIDOG_TABLE = SHARED / "formats" / "MIDOG25_Atypical_Classification_Train_Set.csv"


@pytest.mark.skipif(not (AMIBR / "AMI-BR.csv").is_file(), reason="shared AMi-Br data absent")
def test_real_amibr() -> None:
    ds = load_dataset(AMIBR)
    assert ds.format == "amibr"
    assert len(ds) == 2679 and ds.n_atypical == 547
    assert np.unique(ds.groups).size == 153
    assert set(ds.domains["dataset"].tolist()) == {"MIDOG21", "TUPAC16"}
    assert ds.images.shape == (2679, 128, 128, 3)


@pytest.mark.skipif(not MIDOG_TABLE.is_file(), reason="shared MIDOG 2025 table absent")
def test_real_midog25_table_with_dummy_images(tmp_path: Path) -> None:
    with MIDOG_TABLE.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [next(reader) for _ in range(5)]
    table = write_csv(tmp_path / MIDOG_TABLE.name, header, rows)
    for row in rows:
        png(tmp_path / "patches" / row[0], 9)
    ds = load_dataset(table)
    assert ds.format == "midog25"
    assert ds.labels.tolist() == [int(r[-1] == "AMF") for r in rows]
    assert ds.groups.tolist() == [r[1] for r in rows]
    assert ds.domains["Tumor"].tolist() == [r[4] for r in rows]


@pytest.mark.skipif(not MIDOG_TABLE.is_file(), reason="shared MIDOG 2025 table absent")
def test_real_midog25_table_without_images_says_so() -> None:
    assert detect_format(MIDOG_TABLE)[0] == "midog25"
    with pytest.raises(DatasetError, match=r"image 1.png \(first row\) is not beside the table"):
        load_dataset(MIDOG_TABLE)
