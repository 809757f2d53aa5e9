"""Option checks the commands call before any heavy work, now library functions: each
refuses what it should with the command's one-line message and accepts the rest."""

from __future__ import annotations

import pytest

from harmonization.evaluate import check_protocol
from harmonization.options import harmonizer_params
from matdata.errors import ConfigError
from matdata.qa import check_report_dir


def test_export_options() -> None:
    from modnet.export import export_options

    assert export_options("official") == {} and export_options("torchscript") == {}
    assert export_options("onnx", 18, "dynamo") == {"opset": 18, "exporter": "dynamo"}
    with pytest.raises(ConfigError, match="--to must be one of official, onnx, torchscript"):
        export_options("tflite")
    for kwargs in ({"opset": 17}, {"exporter": "dynamo"}):
        with pytest.raises(ConfigError, match="apply to --to onnx only"):
            export_options("official", **kwargs)


def test_harmonize_eval_protocol() -> None:
    check_protocol("iharm")
    check_protocol("matdata", 256)
    with pytest.raises(ConfigError, match="--protocol must be iharm or matdata"):
        check_protocol("other")
    with pytest.raises(ConfigError, match="fixed at 256x256"):
        check_protocol("iharm", 128)
    with pytest.raises(ConfigError, match="must be positive"):
        check_protocol("matdata", 0)


def test_harmonizer_params() -> None:
    assert harmonizer_params("reinhard") == {}
    assert harmonizer_params("reinhard", 0.5) == {"strength": 0.5}
    assert harmonizer_params("rainnet", None, "640x480") == {"size": (480, 640)}
    with pytest.raises(ConfigError, match="--strength applies to --model reinhard only"):
        harmonizer_params("idih256", 0.5)
    for model in ("reinhard", "none"):
        with pytest.raises(ConfigError, match="--net-size applies to networks only"):
            harmonizer_params(model, None, "256")


def test_qa_report_goes_beside_the_dataset(tmp_path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    check_report_dir(str(ds), str(tmp_path / "ds-qa"))
    check_report_dir(str(ds), str(tmp_path / "dsx"))  # a name prefix is not "inside"
    with pytest.raises(ConfigError, match="is the dataset directory"):
        check_report_dir(str(ds), str(ds) + "/")
    with pytest.raises(ConfigError, match="inside the dataset") as exc:
        check_report_dir(str(ds), str(ds / "r"))
    assert f"--out {ds}-qa" in exc.value.one_line()
    (tmp_path / "link").symlink_to(ds)
    with pytest.raises(ConfigError, match="is the dataset directory"):
        check_report_dir(str(ds), str(tmp_path / "link"))
    with pytest.raises(ConfigError, match="inside the dataset"):
        check_report_dir("s3://b/ds", "s3://b/ds/qa")
    check_report_dir("s3://b/ds", "s3://b/ds-qa")
