"""How long one call takes from Python, for catalog models (`python bench/python_api.py`, with the wheel installed).

Each figure is the median of 7 rounds of 2,000 calls, in microseconds; a
figure belongs in the issue note with its date and machine, not in a test.
"""

import statistics
import timeit

import vramfit

CALLS = {
    "params llama-3.1-8b": lambda: vramfit.params("llama-3.1-8b"),
    "infer llama-3.1-8b": lambda: vramfit.infer("llama-3.1-8b"),
    "infer llama-3.1-8b --engine vllm": lambda: vramfit.infer("llama-3.1-8b", engine="vllm", gpu="h100-80gb"),
    "train llama-3.1-8b (full)": lambda: vramfit.train("llama-3.1-8b"),
    "train llama-3.1-8b --method lora --grad-ckpt": lambda: vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True),
    "train ... --gpu rtx-4090 (with the fit search)": lambda: vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090"),
}

if __name__ == "__main__":
    for name, call in CALLS.items():
        call()  # the first call of a model parses its config; later ones reuse it
        rounds = timeit.repeat(call, number=2000, repeat=7)
        print(f"{statistics.median(rounds) / 2000 * 1e6:8.1f} µs  {name}")
