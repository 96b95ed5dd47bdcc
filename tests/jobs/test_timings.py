"""The results file's per-rank timings (``timings_by_rank``) of a real 2-rank job."""
import json

import pytest

from helpers.processes import DISTSNN, run_mpi

pytestmark = pytest.mark.mpi

#: steps every rank of an evaluation of a network file goes through, in order
STEPS = ["start", "mpi_init", "communicators", "conversion_wait", "broadcast", "build", "load",
         "ready_wait", "journal_open", "first_batch", "evaluation", "reduction"]


def test_every_rank_records_its_steps_cpu_times_and_network_bytes(small_files, tmp_path,
                                                                  build_dir):
    out = tmp_path / "r.json"
    proc = run_mpi(2, [DISTSNN, "evaluate", str(small_files["net"]), "--data",
                       str(small_files["data"]), "-t", "5,9", "-o", str(out), "--build-dir",
                       str(build_dir), "--no-progress", "--chunk-size", "4"])
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    by_rank = results["timings_by_rank"]
    assert [r["rank"] for r in by_rank] == [0, 1]
    assert by_rank[0]["wall_s"] == results["timings_s"]  # rank 0's are the summary's
    size = small_files["net"].stat().st_size
    assert by_rank[0]["bytes"] == {"network_file_read": size}
    assert by_rank[1]["bytes"] == {"network_received": size}
    for record in by_rank:
        wall, cpu = record["wall_s"], record["cpu_s"]
        assert [s for s in wall if s in STEPS] == STEPS  # recorded in the order they ran
        assert set(cpu) == set(wall)
        assert all(wall[s] > 0 for s in STEPS) and all(v >= 0 for v in cpu.values())
        assert wall["journal_write"] > 0 and cpu["start"] > 0
        assert wall["first_batch"] < wall["evaluation"]
        assert wall["build_and_load"] >= wall["build"] + wall["load"]
        # the steps lie within the process's life so far, which the records end
        top_level = [s for s in wall if s not in ("build", "load", "first_batch",
                                                  "journal_write")]
        assert sum(wall[s] for s in top_level) <= record["since_start_s"] + 0.02
        assert sum(cpu[s] for s in top_level) <= record["cpu_since_start_s"] + 0.02
