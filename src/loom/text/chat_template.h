// Chat templates: the Jinja2 template in tokenizer_config.json's "chat_template", rendered the
// way Hugging Face transformers' apply_chat_template does (transformers 4.46.3: jinja2
// ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True, the loopcontrols
// extension, globals raise_exception / strftime_now, a tojson filter that does not escape
// non-ASCII). loom's own interpreter of the Jinja2 subset real templates use (no well-kept C++
// Jinja library is packaged in Debian): Gemma 1/2/3, Llama 3/3.1/3.2, Qwen2 ChatML, Mistral.
//
// Supported: {{ }}, {% %}, {# #}, whitespace control {%- -%} {%+, trim_blocks / lstrip_blocks,
// Jinja's dropping of one trailing newline of the template; statements if/elif/else, for (with
// tuple unpacking, an `if` filter, else, loop.index/index0/revindex/revindex0/first/last/
// length/previtem/nextitem, break/continue), set (names, namespace attributes, block set),
// macro (positional/keyword arguments, defaults), generation (rendered as its body);
// expressions: literals (strings, numbers, true/false/none, lists, dicts, tuples), attribute
// and item access, slices, calls, `x if c else y`, or/and/not, in/not in, == != < <= > >=,
// + - * / // % ** ~; filters (trim, length/count, upper, lower, title, capitalize, tojson,
// default/d, join, first, last, list, items, string, int, float, abs, replace, reverse, sort,
// unique, map, select, reject, selectattr, rejectattr, safe, indent, round, wordcount,
// dictsort); tests (defined, undefined, none, string, number, integer, float, boolean, true,
// false, mapping, iterable, sequence, callable, odd, even, divisibleby, equalto/eq/==, ne/!=,
// lt/<, le/<=, gt/>, ge/>=, in, lower, upper); globals range, namespace, dict, raise_exception,
// strftime_now; str methods (strip, lstrip, rstrip, split, startswith, endswith, upper, lower,
// replace, title, capitalize, find, count, join), dict methods (items, keys, values, get).
// Anything else is a loom::Error naming the construct, the template and its line — never a
// silently different prompt.
//
// Known differences from Python: dict keys iterate in sorted order (nlohmann::json), Python in
// insertion order — only visible when a template iterates or tojson-dumps a dict whose keys
// were not sorted; floats print with the shortest round-trip digits (as Python's repr, but
// exponent forms can differ).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace loom::text {

class CausalTokenizer;

/// Renders a Jinja2 chat template. Variables: messages, add_generation_prompt, tools = none,
/// documents = none, plus every key of extra_context (an object: bos_token, eos_token,
/// date_string, ...; it overrides the former). template_name names the template in errors
/// ("…/tokenizer_config.json: chat_template").
/// Throws loom::Error: a syntax error or unsupported construct (naming it, the template and the
/// line), a raise_exception() call in the template ("chat template raised: <message>"), an
/// operation on an undefined value, or an output over 64 MiB / a runaway loop.
std::string render_chat_template(const std::string& template_source, const nlohmann::json& messages,
                                 bool add_generation_prompt, const nlohmann::json& extra_context,
                                 const std::string& template_name = "chat_template");

/// The chat template of a tokenizer: tokenizer_config.json's "chat_template" (a string, or the
/// entry named "default" of a list of {name, template}), else the directory's
/// chat_template.jinja. Throws loom::Error naming the file when there is none or it has the
/// wrong type.
std::string chat_template_of(const CausalTokenizer& tokenizer);

/// HF tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...):
/// renders chat_template_of(tokenizer) with the tokenizer's special tokens (bos_token,
/// eos_token, unk_token, pad_token, additional_special_tokens) in the context. messages is a
/// list of {"role": ..., "content": ...}. The result holds the BOS when the template writes it
/// (Gemma, Llama 3): encode it with add_special_tokens = false. Throws as render_chat_template.
std::string apply_chat_template(const CausalTokenizer& tokenizer, const nlohmann::json& messages,
                                bool add_generation_prompt);

}  // namespace loom::text
