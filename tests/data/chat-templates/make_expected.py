#!/usr/bin/env python3
"""Writes expected.json: each case of this directory's chat templates rendered by Python jinja2
the way Hugging Face transformers 4.46.3 apply_chat_template renders them
(ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]),
a tojson filter calling json.dumps(ensure_ascii=False, ...), a raise_exception global raising
TemplateError, and render(messages=..., tools=None, documents=None,
add_generation_prompt=..., **special_tokens)).

Dict keys are sorted before rendering, because loom holds JSON objects with sorted keys
(nlohmann::json) — see src/loom/text/chat_template.h.

Usage: python3 tests/data/chat-templates/make_expected.py   (needs jinja2; 3.1.x was used)
"""
import json
import os
import sys

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def sort_keys(x):
    if isinstance(x, dict):
        return {k: sort_keys(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [sort_keys(v) for v in x]
    return x


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

U, A, S = "user", "assistant", "system"
chat1 = [{"role": U, "content": "Hello!"}]
chat3 = [{"role": U, "content": "Translate: good morning"}, {"role": A, "content": "早上好"},
         {"role": U, "content": "  And: good night  \n"}]
chat4 = [{"role": S, "content": "You are terse.\n"}, {"role": U, "content": "  What is 2+2?\n"},
         {"role": A, "content": "4"}, {"role": U, "content": "Thanks 🙂 — ünïcödé\ttab"}]
bad_alternation = [{"role": U, "content": "a"}, {"role": U, "content": "b"}]
gemma3_parts = [{"role": S, "content": [{"type": "text", "text": "Be brief."}]},
                {"role": U, "content": [{"type": "image"}, {"type": "text", "text": "  What is this?  "}]}]
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
tool_chat = [{"role": S, "content": "Use tools."}, {"role": U, "content": "Weather in Paris?"},
             {"role": A, "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                           "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "18 C, sunny"}, {"role": "tool", "content": "wind 5 km/h"}]
llama_tool_chat = tool_chat[:4]
gemma_tokens = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}
llama_tokens = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
qwen_tokens = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}
mistral_tokens = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

CASES = [
    ("gemma", chat3, True, gemma_tokens),
    ("gemma", chat1, False, gemma_tokens),
    ("gemma", chat4, True, gemma_tokens),
    ("gemma", bad_alternation, True, gemma_tokens),
    ("gemma3", chat4, True, gemma_tokens),
    ("gemma3", chat3, False, gemma_tokens),
    ("gemma3", gemma3_parts, True, gemma_tokens),
    ("gemma3", bad_alternation, True, gemma_tokens),
    ("llama3", chat4, True, llama_tokens),
    ("llama3", chat1, False, llama_tokens),
    ("llama3.1", chat4, True, llama_tokens),
    ("llama3.1", chat1, True, dict(llama_tokens, date_string="04 Dec 2026")),
    ("llama3.1", llama_tool_chat, True, dict(llama_tokens, tools=tools)),
    ("llama3.1", llama_tool_chat, True, dict(llama_tokens, tools=tools, tools_in_user_message=False)),
    ("llama3.1", llama_tool_chat, True, dict(llama_tokens, builtin_tools=["code_interpreter", "get_weather"])),
    ("qwen2", chat4, True, qwen_tokens),
    ("qwen2", chat3, True, qwen_tokens),
    ("qwen2.5", chat4, True, qwen_tokens),
    ("qwen2.5", chat3, False, qwen_tokens),
    ("qwen2.5", tool_chat, True, dict(qwen_tokens, tools=tools)),
    ("mistral", chat3, True, mistral_tokens),
    ("mistral", chat4, True, mistral_tokens),
    ("features", chat4, True, llama_tokens),
    ("features", chat1, False, mistral_tokens),
    ("whitespace", chat3, True, {}),
]


def main():
    out = []
    for name, messages, add_gen, extra in CASES:
        with open(os.path.join(HERE, name + ".jinja"), encoding="utf-8") as f:
            source = f.read()
        messages, extra = sort_keys(messages), sort_keys(extra)
        case = {"template": name + ".jinja", "messages": messages, "add_generation_prompt": add_gen,
                "extra_context": extra}
        ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": add_gen}
        ctx.update(extra)
        try:
            case["expected"] = env.from_string(source).render(**ctx)
        except TemplateError as e:
            case["error"] = str(e)
        out.append(case)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "make_expected.py", "jinja2": jinja2.__version__,
                   "python": sys.version.split()[0], "cases": out}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(out)} cases, jinja2 {jinja2.__version__}")


if __name__ == "__main__":
    main()
