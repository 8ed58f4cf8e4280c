// Chat templates: loom's Jinja2 interpreter against Python jinja2 renders of the same templates
// (tests/data/chat-templates/make_expected.py renders them the way HF transformers does), the
// Gemma fixture's chat-template prompt ids from HF transformers 4.46.3, and errors for what it
// cannot render.
#include "loom/text/chat_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/text/causal_tokenizer.h"
#include "support/support.h"

namespace loom::text {
namespace {

using Ids = std::vector<int64_t>;
using ::testing::HasSubstr;
using loom_test::error_of;
using json = nlohmann::json;

const std::string kData = LOOM_TEST_DATA;
const std::string kTemplates = kData + "/chat-templates";

TEST(ChatTemplate, MatchesPythonJinja2OnEveryCase) {
  json ref = core::read_json(kTemplates + "/expected.json");
  ASSERT_GE(ref["cases"].size(), 25u);
  size_t renders = 0, errors = 0;
  for (const auto& c : ref["cases"]) {
    const std::string name = c["template"];
    SCOPED_TRACE(name + " " + c["messages"].dump().substr(0, 120));
    const std::string source = core::read_file(kTemplates + "/" + name);
    if (c.contains("error")) {
      const std::string err = error_of([&] {
        render_chat_template(source, c["messages"], c["add_generation_prompt"], c["extra_context"], name);
      });
      EXPECT_THAT(err, HasSubstr("chat template raised: " + c["error"].get<std::string>()));
      EXPECT_THAT(err, HasSubstr(name));
      ++errors;
    } else {
      EXPECT_EQ(render_chat_template(source, c["messages"], c["add_generation_prompt"], c["extra_context"], name),
                c["expected"].get<std::string>());
      ++renders;
    }
  }
  EXPECT_GE(renders, 20u);
  EXPECT_GE(errors, 3u);
}

// reference.json case 4: HF apply_chat_template(messages, add_generation_prompt=True) then
// tokenizer(text, add_special_tokens=False) — the text and the ids must match exactly.
void check_gemma_chat(const std::string& fixture) {
  SCOPED_TRACE(fixture);
  const std::string dir = kData + "/hf-tiny/" + fixture;
  CausalTokenizer tok = CausalTokenizer::load(dir);
  json ref = core::read_json(dir + "/reference.json");
  const json& ct = ref["chat_template"];
  const std::string text = apply_chat_template(tok, ct["messages"], ct["add_generation_prompt"].get<bool>());
  EXPECT_EQ(text, ct["text"].get<std::string>());
  const Ids ids = tok.encode(text, false);
  EXPECT_EQ(ids, ct["input_ids"].get<Ids>());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.bos_id()), 1);  // exactly one BOS
  EXPECT_EQ(ids, ref["cases"][4]["input_ids"].get<Ids>());
}

TEST(ChatTemplate, GemmaPromptIdsMatchHf) { check_gemma_chat("gemma"); }
TEST(ChatTemplate, Gemma2PromptIdsMatchHf) { check_gemma_chat("gemma2"); }

std::string render_error(const std::string& tmpl, const json& messages = json::array({{{"role", "user"}, {"content", "hi"}}})) {
  return error_of([&] { render_chat_template(tmpl, messages, true, json::object(), "t.jinja"); });
}

TEST(ChatTemplate, WhatItCannotRenderIsAnErrorNamingIt) {
  EXPECT_THAT(render_error("{{ messages | frobnicate }}"), HasSubstr("unsupported filter 'frobnicate'"));
  EXPECT_THAT(render_error("{{ messages | frobnicate }}"), HasSubstr("t.jinja:1"));
  EXPECT_THAT(render_error("a\n{% include 'x' %}"), HasSubstr("unsupported statement {% include %}"));
  EXPECT_THAT(render_error("a\n{% include 'x' %}"), HasSubstr("t.jinja:2"));
  EXPECT_THAT(render_error("{% if messages is frob %}{% endif %}"), HasSubstr("unsupported test 'frob'"));
  EXPECT_THAT(render_error("{{ cycler(1) }}"), HasSubstr("function 'cycler'"));
  EXPECT_THAT(render_error("{% for m in messages %}{{ loop.cycle('a', 'b') }}{% endfor %}"), HasSubstr(".cycle"));
  EXPECT_THAT(render_error("{% if true %}no end"), HasSubstr("missing {% endif %}"));
  EXPECT_THAT(render_error("{% endfor %}"), HasSubstr("unexpected {% endfor %}"));
  EXPECT_THAT(render_error("{{ 'unterminated }}"), HasSubstr("unterminated string"));
  EXPECT_THAT(render_error("{{ 1 +"), HasSubstr("unterminated tag"));
  EXPECT_THAT(render_error("{{ messages[0].nope.deeper }}"), HasSubstr("'nope' is undefined"));
  EXPECT_THAT(render_error("{{ nothing + 1 }}"), HasSubstr("'nothing' is undefined"));
  EXPECT_THAT(render_error("{{ 'a' - 1 }}"), HasSubstr("unsupported operand"));
  EXPECT_THAT(render_error("{{ 1 // 0 }}"), HasSubstr("division by zero"));
  EXPECT_THAT(render_error("{{ raise_exception('custom message') }}"), HasSubstr("chat template raised: custom message"));
  EXPECT_THAT(render_error("{% for i in range(100000000) %}{% endfor %}"), HasSubstr("range() too long"));
  EXPECT_THAT(render_error("{% set s = '0123456789' * 3000000 %}{{ s }}{{ s }}{{ s }}"), HasSubstr("over 64 MiB"));
  EXPECT_THAT(render_error("{% for i in range(2000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}"),
              HasSubstr("more than 1M steps"));
  EXPECT_THAT(render_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"), HasSubstr("too deep"));
  EXPECT_THAT(render_error("{{ '\xFF' }}"), HasSubstr("UTF-8"));
}

// 64-bit integer arithmetic: Python's exact results where they fit, an error where Python's
// unbounded integers would go beyond int64 (found by fuzz_chat_template: `4 ** 12 ** 12`).
TEST(ChatTemplate, IntegerOverflowIsAnErrorNotAWrongNumber) {
  auto render = [](const std::string& t) {
    return render_chat_template(t, json::array({{{"role", "user"}, {"content", "hi"}}}), true, json::object(), "t.jinja");
  };
  EXPECT_EQ(render("{{ 2 ** 10 }} {{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 0 ** 0 }} {{ (-1) ** 99 }} {{ 1 ** 1000000000 }}"),
            "1024 4611686018427387904 -9223372036854775808 1 -1 1");
  EXPECT_EQ(render("{{ 9223372036854775806 + 1 }} {{ -7 // 2 }} {{ -7 % 2 }}"), "9223372036854775807 -4 1");
  EXPECT_THAT(render_error("{{ 4 ** 12 ** 12 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(render_error("{{ 2 ** 64 }}"), HasSubstr("integer overflow in 2 ** 64"));
  EXPECT_THAT(render_error("{{ 9223372036854775807 + 1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(render_error("{{ -9223372036854775807 - 2 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(render_error("{{ 4294967296 * 4294967296 }}"), HasSubstr("integer overflow"));
}

TEST(ChatTemplate, TemplateSourceOfTheTokenizer) {
  loom_test::TempDir tmp;
  const std::string d = tmp.path().string() + "/m";
  std::filesystem::create_directories(d);
  std::filesystem::copy_file(kData + "/hf-tiny/gemma/tokenizer.model", d + "/tokenizer.model");
  // No template at all.
  loom_test::write_file(d + "/tokenizer_config.json", R"({"bos_token": "<bos>"})");
  EXPECT_THAT(error_of([&] { chat_template_of(CausalTokenizer::load(d)); }), HasSubstr("no chat template"));
  // A list of named templates: "default" is used.
  loom_test::write_file(d + "/tokenizer_config.json",
                        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ bos_token }}"}], "bos_token": "<bos>"})");
  CausalTokenizer tok = CausalTokenizer::load(d);
  EXPECT_EQ(apply_chat_template(tok, json::array(), false), "D<bos>");
  loom_test::write_file(d + "/tokenizer_config.json", R"({"chat_template": 7, "bos_token": "<bos>"})");
  EXPECT_THAT(error_of([&] { chat_template_of(CausalTokenizer::load(d)); }), HasSubstr("chat_template"));
  // chat_template.jinja beside it.
  loom_test::write_file(d + "/tokenizer_config.json", R"({"bos_token": "<bos>"})");
  loom_test::write_file(d + "/chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}\n");
  EXPECT_EQ(apply_chat_template(CausalTokenizer::load(d), json::array({{{"role", "user"}, {"content", "x"}}}), true), "x");
}

}  // namespace
}  // namespace loom::text
