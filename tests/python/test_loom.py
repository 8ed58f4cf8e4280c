"""Tests of the loom Python module (run by ctest as python_api, from the repository root, with
PYTHONPATH=build/python and LOOM_BINARY=build/loom): parity with the CLI on the Marian and NLLB
fixtures, n-best and scores, sampling, errors as loom.Error with the CLI's messages, GIL release,
and the examples of docs/python.md."""
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest

import loom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARIAN = os.path.join(ROOT, "tests/data/hf-tiny/marian-en-zh")
NLLB = os.path.join(ROOT, "tests/data/hf-tiny/nllb-m2m100")
LOOM = os.environ.get("LOOM_BINARY", os.path.join(ROOT, "build/loom"))

LINES = [
    "Hello world.",
    "The cat sat on the mat. It was happy.",
    "",
    "Everyone has the right to life, liberty and security of person.",
]


def cli(args, stdin=None):
    return subprocess.run([LOOM] + args, input=stdin, capture_output=True, text=True)


class CliParity(unittest.TestCase):
    def check(self, model, extra_cli, kwargs, init=None):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.txt")
            with open(src, "w") as f:
                f.write("\n".join(LINES) + "\n")
            out = os.path.join(d, "out.txt")
            r = cli(["translate", "--model", model, "--no-progress", src, out] + extra_cli)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                expected = f.read().split("\n")[: len(LINES)]
        t = loom.Translator(model, **(init or {}))
        self.assertEqual(t.translate_batch(LINES, **kwargs), expected)

    def test_marian_greedy_and_beam(self):
        self.check(MARIAN, ["--beam", "1"], {"beam_size": 1})
        self.check(MARIAN, ["--beam", "4"], {"beam_size": 4})

    def test_nllb_with_languages(self):
        self.check(NLLB, ["--src", "eng_Latn", "--tgt", "zho_Hans", "--beam", "2"],
                   {"beam_size": 2}, init={"src": "eng_Latn", "tgt": "zho_Hans"})
        self.check(NLLB, ["--src", "eng_Latn", "--tgt", "fra_Latn", "--beam", "1"],
                   {"beam_size": 1, "src": "eng_Latn", "tgt": "fra_Latn"},
                   init={"src": "eng_Latn", "tgt": "zho_Hans"})  # NLLB needs languages at load

    def test_sampling_matches_cli(self):
        self.check(MARIAN, ["--sample", "--seed", "3", "--top-k", "20"], {"sample": True, "seed": 3, "top_k": 20})

    def test_n_best_matches_cli_jsonl(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.jsonl")
            with open(src, "w") as f:
                for line in LINES:
                    f.write(json.dumps({"text": line}) + "\n")
            out = os.path.join(d, "out.jsonl")
            r = cli(["translate", "--model", MARIAN, "--fields", "text", "--beam", "4", "--n-best", "3",
                     "--with-scores", "--no-progress", src, out])
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = [json.loads(l) for l in open(out)]
        t = loom.Translator(MARIAN)
        got = t.translate_batch(LINES, beam_size=4, n_best=3, return_scores=True)
        plain = t.translate_batch(LINES, beam_size=4, n_best=3)
        for row, hyps, texts in zip(rows, got, plain):
            self.assertEqual([h["text"] for h in hyps], row["text_zh_nbest"])
            self.assertEqual(texts, row["text_zh_nbest"])
            for h, s in zip(hyps, row["text_zh_nbest_scores"]):
                if s is None:
                    self.assertIsNone(h["score"])
                else:
                    self.assertAlmostEqual(h["score"], s, places=5)


class Errors(unittest.TestCase):
    def cli_error(self, args):
        r = cli(args, stdin="Hello.\n")
        self.assertNotEqual(r.returncode, 0)
        m = re.match(r"loom: error: (.*)\n", r.stderr)
        self.assertIsNotNone(m, r.stderr)
        return m.group(1)

    def test_missing_model_same_message(self):
        msg = self.cli_error(["translate", "--model", "/no/such/model", "--no-progress"])
        with self.assertRaises(loom.Error) as e:
            loom.Translator("/no/such/model")
        self.assertEqual(str(e.exception), msg)
        self.assertIsInstance(e.exception, RuntimeError)

    def test_unknown_language_same_message(self):
        msg = self.cli_error(["translate", "--model", NLLB, "--src", "eng_Latn", "--tgt", "xx_Nope", "--no-progress"])
        t = loom.Translator(NLLB, src="eng_Latn", tgt="zho_Hans")
        with self.assertRaises(loom.Error) as e:
            t.translate_batch(["Hello."], tgt="xx_Nope")
        self.assertEqual(str(e.exception), msg)
        # the Translator stays usable after an error
        self.assertEqual(len(t.translate_batch(["Hello."], tgt="zho_Hans")), 1)

    def test_bad_options(self):
        t = loom.Translator(MARIAN)
        with self.assertRaisesRegex(loom.Error, "sampling draws one translation"):
            t.translate_batch(["Hello."], sample=True, beam_size=4)
        with self.assertRaisesRegex(loom.Error, "'top_p': must be in"):
            t.translate_batch(["Hello."], sample=True, top_p=0.0)
        with self.assertRaisesRegex(loom.Error, "'device'"):
            loom.Translator(MARIAN, device="cuda")
        with self.assertRaisesRegex(loom.Error, "/no/such/input.txt"):
            t.translate_file("/no/such/input.txt", os.path.join(tempfile.mkdtemp(), "o.txt"))  # names the file


class Gil(unittest.TestCase):
    def test_other_threads_run_while_translating(self):
        t = loom.Translator(MARIAN, threads=1)
        texts = ["Everyone has the right to life, liberty and security of person."] * 64
        ticks = []
        done = threading.Event()

        def ticker():
            while not done.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.001)

        th = threading.Thread(target=ticker)
        th.start()
        start = time.monotonic()
        t.translate_batch(texts, beam_size=4)
        end = time.monotonic()
        done.set()
        th.join()
        during = [x for x in ticks if start < x < end]
        # With the GIL held the ticker could not run at all during the call.
        self.assertGreater(len(during), 3, (end - start, len(ticks)))


class Docs(unittest.TestCase):
    def test_docs_examples_run(self):
        with open(os.path.join(ROOT, "docs/python.md")) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertGreaterEqual(len(blocks), 3)
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            for b in blocks:
                exec(compile(b, "docs/python.md", "exec"), {})
        finally:
            os.chdir(cwd)


if __name__ == "__main__":
    unittest.main()
