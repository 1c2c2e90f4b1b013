import json

from elsr.cli.large_image import main


def test_large_image_run_reports_memory_and_tiles_match(tmp_path):
    out = tmp_path / "large.json"
    assert main(["--size", "260x150", "--crop", "64", "--max-memory", "800", "--tile", "48", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["exit_code"] == 0 and result["output_size"] == "1040x600"
    assert 0 < result["peak_rss_mb"] < 2000
    assert result["tiled_vs_untiled"]["max_abs"] == 0 and result["tiled_vs_untiled"]["pixels"] > 0
