"""What a run shows and writes besides results, and the one-line errors of careless inputs:
sheets, loss traces and curve, the end-of-run report, file permissions, bad npz / JSON / VGG
files, bring-your-own priors, convert --overwrite and the prior beside the weights."""

import gc
import json
import os

import numpy as np
import pytest
from PIL import Image

from gaussjax.analysis import prior as prior_lib
from gaussjax.files import checkpoints, results, visuals
from gaussjax.files.safe_io import read_json, read_npz, write_bytes_atomic
from gaussjax.inversion import run_outputs
from gaussjax.inversion.batches import Progress, format_seconds
from gaussjax.inversion.targets import Target


def test_comparison_sheet_is_target_reconstruction_difference():
    rs = np.random.RandomState(0)
    targets = rs.randint(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    recons = rs.randint(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    sheet = visuals.comparison_sheet(targets, recons)
    assert sheet.shape == (8, 15, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[4:8, 0:5], targets[1])
    np.testing.assert_array_equal(sheet[4:8, 5:10], recons[1])
    expected = np.abs(targets[1].astype(int) - recons[1].astype(int))
    np.testing.assert_array_equal(sheet[4:8, 10:15], expected)
    frames = visuals.progress_frames(targets[0], recons)
    assert frames.shape == (2, 4, 10, 3)
    np.testing.assert_array_equal(frames[1, :, :5], targets[0])
    np.testing.assert_array_equal(frames[1, :, 5:], recons[1])


def test_prepared_target_of_a_file_is_the_pixels_exactly_as_read():
    pixels_uint8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    pixels = pixels_uint8.astype(np.float32) / 127.5 - 1.0  # images.to_float
    target = run_outputs.target_uint8(Target("a", "a.png"), pixels)
    np.testing.assert_array_equal(target, pixels_uint8)


def test_curve_points_follow_linear_steps_and_log_losses():
    box = (10, 20, 110, 220)  # 100 px wide, 200 px high
    points = visuals.curve_points([0, 50, 100], [1.0, 10.0, 100.0], box, (0, 100), (0, 2))
    assert points == [(10.0, 220.0), (60.0, 120.0), (110.0, 20.0)]


def test_loss_curve_draws_every_image_in_its_colour():
    traces = {"a": ([10, 20, 30], [3.0, 1.0, 0.5]), "b": ([10, 20, 30], [2.0, None, 0.1])}
    curve = visuals.loss_curve(traces, width=320, height=200)
    assert curve.shape == (200, 320, 3)
    colours = {tuple(c) for c in curve.reshape(-1, 3)}
    assert visuals.PALETTE[0] in colours and visuals.PALETTE[1] in colours
    empty = visuals.loss_curve({"a": ([1], [float("nan")])}, width=320, height=200)
    assert visuals.PALETTE[0] not in {tuple(c) for c in empty.reshape(-1, 3)}


def test_traces_keep_the_last_record_per_image_and_nan_as_none(tmp_path):
    results.append_trace(tmp_path, "a", [5, 10], [2.0, 1.0])
    results.append_trace(tmp_path, "b", [5, 10], [2.0, float("nan")])
    results.append_trace(tmp_path, "a", [5, 10], [4.0, 3.0])  # a batch rerun after a crash
    assert results.read_traces(tmp_path) == {
        "a": ([5, 10], [4.0, 3.0]),
        "b": ([5, 10], [2.0, None]),
    }


def test_run_report_counts_and_gives_mean_and_worst(tmp_path):
    for name, psnr, lpips in (("a", 20.0, 0.2), ("b", 30.0, 0.4), ("c", 25.0, 0.3)):
        results.append_summary(
            tmp_path, {"name": name, "status": "ok", "psnr": psnr, "lpips": lpips}
        )
    results.append_summary(tmp_path, {"name": "d", "status": "unreadable"})
    results.append_summary(tmp_path, {"name": "old", "status": "ok", "psnr": 1.0})  # not asked for
    report = results.run_report(tmp_path, ["a", "b", "c", "d"])
    assert report == [
        "3 of 4 images finished, 1 unreadable",
        "PSNR  mean 25 dB, worst 20 dB (a)",
        "LPIPS mean 0.3, worst 0.4 (b)",
    ]


def test_progress_line_shows_images_done_and_an_eta(monkeypatch):
    lines = []
    clock = iter([0.0, 10.0])
    monkeypatch.setattr("time.perf_counter", lambda: next(clock))
    progress = Progress(total_images=4, num_batches=2, steps=100, log=lines.append)
    progress.finish_batch(2, 2)
    progress.batch_callback(2)(50, np.array([1.0, 3.0]))  # 10 s in: 1.5 of 2 batches done
    assert "images 3-4 of 4 (batch 2/2, 2 done)  step 50/100  loss 2" in lines[0]
    assert "30.0 image-steps/s" in lines[0]  # (2 * 100 + 2 * 50) / 10 s
    assert lines[0].endswith("ETA 3s")  # 10 s * 0.5 / 1.5
    assert [format_seconds(s) for s in (45, 185, 7620)] == ["45s", "3m05s", "2h07m"]


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage, not an archive", "not an .npz archive: the file does not start like a zip"),
        (b"\x93NUMPY\x01\x00", "a single .npy array"),
        (None, "holds pickled Python objects, which are refused"),
    ],
)
def test_bad_npz_files_get_one_line_without_numpy_advice(tmp_path, content, message):
    path = tmp_path / "prior.npz"
    if content is None:
        np.savez(path, mean=np.array([{"a": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_npz(path)
    assert "allow_pickle" not in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_corrupt_json_names_the_file_and_the_place(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"generator": {"z_dim": 3,\n')
    with pytest.raises(ValueError, match=rf"^{path}: corrupt JSON \(.* at line 2, column 1\)$"):
        read_json(path)


@pytest.mark.parametrize(
    "config, message",
    [
        ('{"generator": {"z_dim": 3', "corrupt JSON"),
        ('{"fingerprint": "x"}', "no 'generator' section"),
        ('{"generator": {"z_dim": 3, "colour": 1}}', "bad generator config"),
        ("[1, 2]", "expected a JSON object, found list"),
    ],
)
def test_corrupt_config_json_is_one_line_naming_the_file(tmp_path, config, message):
    (tmp_path / "weights").mkdir()
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ValueError, match=message) as info:
        checkpoints.read_generator_config(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "config.json")) and "\n" not in str(info.value)


# Orbax leaves the reads of a failed restore as never-awaited coroutines; collected here (gc),
# their warnings belong to this test and are expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_weights_that_do_not_match_config_json_are_one_line(tmp_path, fixture_dir):
    from converters.convert import convert

    convert(fixture_dir / "skip32.pkl", tmp_path / "gen", log=lambda _: None)
    doc = json.loads((tmp_path / "gen" / "config.json").read_text())
    doc["generator"]["w_dim"] = 32
    (tmp_path / "gen" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="weights cannot be read as the generator of") as info:
        checkpoints.load_generator_module(tmp_path / "gen")
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    del info
    gc.collect()


def test_bad_vgg_file_names_the_flag_in_one_sentence(tmp_path):
    pytest.importorskip("torch")
    from gaussjax.files import lpips_weights

    (tmp_path / "vgg16.pt").write_bytes(os.urandom(3000))
    with pytest.raises(lpips_weights.LPIPSWeightsError) as info:
        lpips_weights.load_lpips(tmp_path / "vgg16.pt")
    message = str(info.value)
    assert "lpips_lin=" in message and "lin_path" not in message
    assert message.endswith("(the LPIPS v0.1 lin weights)") and "\n" not in message
    assert "there is a high likelihood" not in message  # torch's long advice is not half-quoted


def test_a_prior_of_mean_and_cov_only_loads_with_closed_form_w_moments(tmp_path):
    rs = np.random.RandomState(0)
    a = rs.randn(6, 6)
    mean, cov = rs.randn(6), a @ a.T + np.eye(6)
    np.savez(tmp_path / "mine.npz", mean=mean, cov=cov)
    prior, stats = prior_lib.load_prior(tmp_path / "mine.npz", expected_fingerprint="anything")
    np.testing.assert_allclose(np.asarray(prior.mean), mean, rtol=1e-6)
    assert prior.negative_slope == 0.2 and stats.generator_fingerprint is None
    v = rs.multivariate_normal(mean, cov, size=400_000)
    w = np.where(v >= 0, v, 0.2 * v)  # degaussianize
    np.testing.assert_allclose(stats.mean_w, w.mean(0), atol=0.01)
    np.testing.assert_allclose(stats.w_std, np.sqrt(w.var(0).sum()), rtol=0.005)
    identity_mean, identity_std = prior_lib.degaussianized_moments(mean, cov, negative_slope=1.0)
    np.testing.assert_allclose(identity_mean, mean)  # slope 1: w = v exactly
    np.testing.assert_allclose(identity_std, np.sqrt(np.trace(cov)))


def test_convert_overwrite_keeps_the_prior_of_unchanged_weights(tmp_path, fixture_dir):
    from converters.convert import convert

    dst, notes = tmp_path / "gen", []
    generator = convert(fixture_dir / "skip32.pkl", dst, log=notes.append)
    fingerprint = checkpoints.generator_fingerprint(generator)
    zeros = {k: np.zeros(3) for k in ("mean", "mean_w", "skew_w", "kurt_w", "skew_v", "kurt_v")}
    stats = prior_lib.PriorStats(
        cov=np.eye(3), negative_slope=0.2, w_std=1.0, num_samples=2, seed=0, class_idx=-1, **zeros
    )
    prior_lib.save_prior(dst / "prior.npz", stats, fingerprint)
    prior_bytes = (dst / "prior.npz").read_bytes()
    convert(fixture_dir / "skip32.pkl", dst, overwrite=True, log=notes.append)
    assert (dst / "prior.npz").read_bytes() == prior_bytes
    assert notes == [
        f"kept {dst / 'prior.npz'}: the weights are unchanged (fingerprint {fingerprint})"
    ]
    convert(fixture_dir / "skip32.pkl", dst, network="G", overwrite=True, log=notes.append)
    assert not (dst / "prior.npz").exists()  # fitted for other weights: never used by mistake
    assert (dst / f"prior.{fingerprint}.npz").read_bytes() == prior_bytes
    assert "was fitted for other weights" in notes[-1] and "experiments.fit_prior" in notes[-1]


def test_sheet_image_on_disk_has_three_columns(tmp_path):
    batch = [Target("a", None), Target("b", None)]
    pixels = [np.full((4, 4, 3), -1.0, np.float32), np.full((4, 4, 3), 1.0, np.float32)]
    recons = np.zeros((3, 4, 4, 3), np.float32)  # one padding row
    recorder = run_outputs.BatchRecorder(lambda *_: None, keep_frames=False)
    run_outputs.save_batch_visuals(
        tmp_path, "batch0000", batch, pixels, recons, [1], recorder, None
    )
    sheet = np.asarray(Image.open(tmp_path / "sheets" / "batch0000.png"))
    assert sheet.shape == (8, 12, 3)
    assert sorted(p.name for p in (tmp_path / "targets").iterdir()) == ["b.png"]  # kept rows only
    np.testing.assert_array_equal(sheet[4:, 8:], np.abs(255 - 128))  # |1.0 -> 255 minus 0 -> 128|
