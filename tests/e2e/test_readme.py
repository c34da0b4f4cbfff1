"""Every `console` block of the README, run verbatim from the repository root, prints what the README shows
(standard output; trailing blank lines aside). The README cannot drift from the tool."""
import os
import re
import subprocess
import unittest

import harness as h


def console_blocks():
    with open(os.path.join(h.SOURCE_DIR, "README.md")) as f:
        text = f.read()
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.split("\n")
        assert lines[0].startswith("$ "), block
        yield lines[0][2:], "\n".join(lines[1:])


class ReadmeExamples(unittest.TestCase):
    def test_every_console_block(self):
        binary = os.path.join(h.SOURCE_DIR, "build", "src", "gpuwarm")
        if not os.path.exists(binary):
            self.skipTest("build/src/gpuwarm not built (scripts/setup.sh builds it)")
        blocks = list(console_blocks())
        self.assertGreaterEqual(len(blocks), 6)
        env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "LC_ALL": "C.UTF-8"}
        for command, shown in blocks:
            r = subprocess.run(["bash", "-c", command], cwd=h.SOURCE_DIR, capture_output=True, text=True, env=env,
                               timeout=60)
            self.assertEqual(r.stdout.rstrip("\n"), shown.rstrip("\n"), command)


if __name__ == "__main__":
    unittest.main()
