// The tokenizer-dependent half of chat_template.h (the interpreter in chat_template.cc is
// torch- and tokenizer-free so the fuzz build can compile it alone).
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/text/causal_tokenizer.h"
#include "loom/text/chat_template.h"

namespace loom::text {

std::string chat_template_of(const CausalTokenizer& tokenizer) {
  const std::string cfg_path = tokenizer.dir() + "/tokenizer_config.json";
  const nlohmann::json& cfg = tokenizer.config();
  auto it = cfg.find("chat_template");
  if (it != cfg.end() && !it->is_null()) {
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array()) {
      // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (size_t i = 0; i < it->size(); ++i) {
        const auto& e = (*it)[i];
        if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
            !e["template"].is_string())
          fail(Where{cfg_path, 0, "chat_template[" + std::to_string(i) + "]"}, "expected {{\"name\": ..., \"template\": ...}}");
        if (e["name"] == "default") return e["template"].get<std::string>();
      }
      fail(Where{cfg_path, 0, "chat_template"}, "no template named \"default\" in the list");
    }
    fail(Where{cfg_path, 0, "chat_template"}, "expected a string or a list of {{name, template}}, got {}",
         it->type_name());
  }
  const std::string jinja = tokenizer.dir() + "/chat_template.jinja";
  if (core::file_exists(jinja)) return core::read_file(jinja);
  fail(Where{cfg_path, 0, "chat_template"}, "the tokenizer has no chat template (nor chat_template.jinja)");
}

std::string apply_chat_template(const CausalTokenizer& tokenizer, const nlohmann::json& messages,
                                bool add_generation_prompt) {
  if (!messages.is_array()) fail("chat messages must be a list of {{\"role\": ..., \"content\": ...}}");
  // HF passes tokenizer.special_tokens_map: only the tokens that are set.
  nlohmann::json extra = nlohmann::json::object();
  const std::pair<const char*, std::string> specials[] = {{"bos_token", tokenizer.bos_token()},
                                                          {"eos_token", tokenizer.eos_token()},
                                                          {"unk_token", tokenizer.unk_token()},
                                                          {"pad_token", tokenizer.pad_token()}};
  for (const auto& [k, v] : specials)
    if (!v.empty()) extra[k] = v;
  if (!tokenizer.additional_special_tokens().empty())
    extra["additional_special_tokens"] = tokenizer.additional_special_tokens();
  const std::string name = core::file_exists(tokenizer.dir() + "/tokenizer_config.json") &&
                                   tokenizer.config().contains("chat_template")
                               ? tokenizer.dir() + "/tokenizer_config.json"
                               : tokenizer.dir() + "/chat_template.jinja";
  return render_chat_template(chat_template_of(tokenizer), messages, add_generation_prompt, extra, name);
}

}  // namespace loom::text
