#!/usr/bin/env python3
"""Reference renderings of real chat templates, made by transformers itself.

For every template in `Tests/Fixtures/chat_templates/templates/` (the text exactly as the
model publishes it; see SOURCES for where each came from) this renders a fixed set of
conversations with transformers' own `apply_chat_template(..., tokenize=False,
add_generation_prompt=True)` and writes `Tests/Fixtures/chat_templates/<name>.json`:
the template file, its source, the special tokens the template sees, and per case the
messages plus either the expected text or the error transformers raised.

    /work/venv/bin/python tools/chat-templates/render.py            # writes the fixtures
    /work/venv/bin/python tools/chat-templates/render.py --extract chat-template-automap.ts

`--extract` (re)writes the .jinja files from huggingface.js's
packages/ollama-utils/src/chat-template-automap.ts, whose `gguf` field of each entry is
the `tokenizer.chat_template` stored in that model's GGUF, which llama.cpp's converter
copies verbatim from the model's tokenizer_config.json.
"""
import argparse
import json
import pathlib
import re
import sys

import transformers
import transformers.tokenization_utils_base as tokenization_base
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests/Fixtures/chat_templates"
TEMPLATES = FIXTURES / "templates"

AUTOMAP = {
    "repo": "huggingface/huggingface.js",
    "path": "packages/ollama-utils/src/chat-template-automap.ts",
    "commit": "007948d5aac310316dd57b5d8e5c091e864418dc",
}

# name: models that publish this template, the automap entry it was taken from, the
# special tokens of the model's tokenizer_config.json (given to the template as strings,
# as transformers does), and what is known about the match.
SOURCES = {
    "mixtral": {
        "models": ["mistralai/Mixtral-8x7B-Instruct-v0.1"],
        "entry": "library/mixtral:8x7b",
        "special_tokens": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    },
    "qwen2": {
        "models": ["Qwen/Qwen2-57B-A14B-Instruct", "Qwen/Qwen1.5-MoE-A2.7B-Chat"],
        "entry": "library/qwen2:0.5b",
        "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "note": "taken from Qwen2-0.5B-Instruct's GGUF; the Qwen2 instruct models (57B-A14B included) and "
                "Qwen1.5-MoE-A2.7B-Chat publish this same one-line ChatML template",
    },
    "qwen1.5": {
        "models": ["Qwen/Qwen1.5-0.5B-Chat"],
        "entry": "library/qwen:0.5b",
        "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "note": "the first Qwen1.5 chat template (no <|im_end|> after a final message without a generation prompt)",
    },
    "qwen3": {
        "models": ["Qwen/Qwen3-30B-A3B"],
        "entry": "library/qwen3:0.6b",
        "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "note": "taken from Qwen3-0.6B's GGUF; the Qwen3 (2504) models, Qwen3-30B-A3B included, share this template",
    },
    "olmoe": {
        "models": ["allenai/OLMoE-1B-7B-0125-Instruct"],
        "entry": "library/olmo2:7b",
        "special_tokens": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|pad|>"},
        "note": "taken from OLMo-2-7B-Instruct's GGUF: the Tulu 3 template with a leading bos_token, which "
                "OLMoE-1B-7B-0125-Instruct publishes as well",
    },
    "deepseek-v3": {
        "models": ["deepseek-ai/DeepSeek-V3"],
        "entry": "library/deepseek-v3:671b",
        "special_tokens": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                           "pad_token": "<｜end▁of▁sentence｜>"},
    },
    "deepseek-v2.5": {
        "models": ["deepseek-ai/DeepSeek-V2.5"],
        "entry": "library/deepseek-v2.5:236b",
        "special_tokens": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                           "pad_token": "<｜end▁of▁sentence｜>"},
    },
    "qwen3-coder": {
        "models": ["Qwen/Qwen3-Coder-30B-A3B-Instruct"],
        "entry": "library/qwen3-coder:30b",
        "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    },
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city. ",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["city"],
        },
    },
}

# name, messages, extra template variables (besides add_generation_prompt and the tokens)
CASES = [
    ("user", [{"role": "user", "content": "Hello!"}], {}),
    ("system_user", [{"role": "system", "content": "You are a terse assistant."},
                     {"role": "user", "content": "Name a prime number."}], {}),
    ("multi_turn", [{"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4."},
                    {"role": "user", "content": "And times 3?"}], {}),
    ("system_multi_turn", [{"role": "system", "content": "Answer in German."},
                           {"role": "user", "content": "Good morning"},
                           {"role": "assistant", "content": "Guten Morgen"},
                           {"role": "user", "content": "Thanks"}], {}),
    ("assistant_last", [{"role": "user", "content": "Say hi"},
                        {"role": "assistant", "content": "Hi"}], {}),
    ("unicode", [{"role": "user", "content": "Grüße, 你好, مرحبا, 🙂 — \"quotes\", back\\slash, {{ braces }} and {% tags %}\n\tnewline"}], {}),
    ("empty_content", [{"role": "user", "content": ""}], {}),
    ("whitespace_content", [{"role": "system", "content": "  padded system  \n"},
                            {"role": "user", "content": "\n  padded user\n\n"}], {}),
    ("thinking_history", [{"role": "user", "content": "Is 7 prime?"},
                          {"role": "assistant", "content": "<think>\nIt has no divisors but 1 and 7.\n</think>\n\nYes."},
                          {"role": "user", "content": "And 9?"}], {}),
    ("two_system", [{"role": "system", "content": "Rule one."}, {"role": "system", "content": "Rule two."},
                    {"role": "user", "content": "Go"}], {}),
    ("system_then_assistant", [{"role": "system", "content": "Be brief."},
                               {"role": "assistant", "content": "Ready."}], {}),
    ("two_users", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}], {}),
    ("tools", [{"role": "user", "content": "Weather in Zürich?"}], {"tools": [WEATHER_TOOL]}),
    ("thinking_off", [{"role": "user", "content": "Quick answer: 3*3?"}], {"enable_thinking": False}),
    ("tool_message", [{"role": "user", "content": "Compute"}, {"role": "tool", "content": "42"}], {}),
]


def extract(automap: pathlib.Path) -> None:
    text = automap.read_text()
    decoder = json.JSONDecoder()
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    for name, source in SOURCES.items():
        match = re.search(r'model: "' + re.escape(source["entry"]) + r'",\s*gguf: ', text)
        if not match:
            sys.exit(f"{automap}: no entry {source['entry']}")
        template, _ = decoder.raw_decode(text, match.end())   # the JS string literal is valid JSON here
        (TEMPLATES / f"{name}.jinja").write_text(template)
        print(f"{name}: {len(template)} characters from {source['entry']}")


def tokenizer_for(template: str, special_tokens: dict) -> PreTrainedTokenizerFast:
    # apply_chat_template only needs the template and the special tokens: a word-level
    # vocabulary of those tokens is enough, and nothing here is tokenized.
    vocabulary = {t: i for i, t in enumerate(sorted(set(special_tokens.values()) | {"<unk>"}))}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **special_tokens)
    tokenizer.chat_template = template
    return tokenizer


# The variables transformers hands the template (tools, documents, add_generation_prompt,
# the special tokens, extra keywords), recorded so the Swift side renders with exactly those.
_seen_variables = {}
_render = tokenization_base.render_jinja_template


def _recording_render(*args, **kwargs):
    plumbing = {"conversations", "chat_template", "return_assistant_tokens_mask", "continue_final_message"}
    _seen_variables.clear()
    _seen_variables.update({k: v for k, v in kwargs.items() if k not in plumbing})
    return _render(*args, **kwargs)


tokenization_base.render_jinja_template = _recording_render


def render_all() -> None:
    for name, source in SOURCES.items():
        template_file = TEMPLATES / f"{name}.jinja"
        template = template_file.read_text()
        tokenizer = tokenizer_for(template, source["special_tokens"])
        cases = []
        for case_name, messages, extra in CASES:
            case = {"name": case_name, "messages": messages}
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
                case["variables"] = dict(_seen_variables)
                case["expected"] = text
            except Exception as error:  # the template's raise_exception, or a Jinja error
                case["variables"] = dict(_seen_variables)
                case["error"] = str(error)
                case["error_type"] = type(error).__name__
            cases.append(case)
        fixture = {
            "template_file": f"templates/{template_file.name}",
            "models": source["models"],
            "source": {**AUTOMAP, "entry": source["entry"], "field": "gguf"},
            "note": source.get("note"),
            # The tokenizer's special tokens (transformers passes them to the template as
            # strings); each case's `variables` is everything the template saw besides messages.
            "special_tokens": source["special_tokens"],
            "transformers": transformers.__version__,
            "cases": cases,
        }
        if fixture["note"] is None:
            del fixture["note"]
        out = FIXTURES / f"{name}.json"
        out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
        errors = sum("error" in c for c in cases)
        print(f"{out.relative_to(ROOT)}: {len(cases)} cases, {errors} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract", type=pathlib.Path, help="chat-template-automap.ts to take the templates from")
    args = parser.parse_args()
    if args.extract:
        extract(args.extract)
    render_all()


if __name__ == "__main__":
    main()
