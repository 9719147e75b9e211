"""The query builder's section of docs/async-reads.md runs as written, in order, against the
real MariaDB and Redis: its setup block makes the tables, every other block uses them.

Only the service locations are swapped for this test's fresh database and key prefix; each
must appear in the section, so a rename here cannot silently stop the swap.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "async-reads.md"
SECTION = "## The query builder"


def section_blocks() -> list[str]:
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)


def test_the_query_builder_examples_run_in_order(
    mysql_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    blocks = section_blocks()
    assert len(blocks) >= 15, "the examples moved: update the test"
    script = "\n".join(f"# --- block {n}\n{code}" for n, code in enumerate(blocks, start=1))
    script += '\nprint("docs story ran")\n'
    for written, ours in {
        "mysql://root@127.0.0.1:3306/test": mysql_url,
        "redis://127.0.0.1:6379/0": redis_url,
        "Registry()": f"Registry(key_prefix={key_prefix!r})",
    }.items():
        assert written in script, f"the section no longer writes {written!r}: update the test"
        script = script.replace(written, ours)
    path = tmp_path / "docs_query_builder.py"
    path.write_text(script)

    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "docs story ran" in out
    assert "{'id': 4, 'bio': 'bio of user 4'}" in out
    assert "stopped by MySQL: 1969" in out
    assert "cancelled: True" in out
    assert "comments" in out and "1146" in out
    assert "nothing was sent" in out
    assert "Counter({'ok': 1})" in out
