// Byte-level BPE tokenizer.json (BpeTokenizer, and CausalTokenizer on it) against ids computed by
// an independent Python implementation (tests/data/tokenizers/byte-bpe/make_fixture.py: the
// `regex` module for the pre-tokenizer regexes, a plain BPE loop), plus hand-computed cases.
#include "loom/text/bpe_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/text/causal_tokenizer.h"
#include "loom/text/chat_template.h"
#include "support/support.h"

namespace loom::text {
namespace {

using Ids = std::vector<int64_t>;
using ::testing::HasSubstr;
using loom_test::error_of;

const std::string kDir = std::string(LOOM_TEST_DATA) + "/tokenizers/byte-bpe";

class ByteBpeFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ByteBpeFixture, MatchesIndependentPythonImplementation) {
  const std::string dir = kDir + "/" + GetParam();
  CausalTokenizer tok = CausalTokenizer::load(dir);
  EXPECT_EQ(tok.kind(), "bpe");
  nlohmann::json ref = core::read_json(dir + "/expected.json");
  EXPECT_EQ(tok.vocab_size(), ref["vocab_size"].get<int64_t>());
  ASSERT_GE(ref["cases"].size(), 10u);
  for (const auto& c : ref["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    const Ids ids = c["ids"].get<Ids>();
    EXPECT_EQ(tok.encode(text, false), ids);
    EXPECT_EQ(tok.encode(text, true), c["ids_with_special_tokens"].get<Ids>());
    EXPECT_EQ(tok.decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip_special"].get<std::string>());
    // Streaming == one-shot, one id at a time.
    StreamDecoder d(tok, false);
    std::string streamed;
    for (int64_t id : ids) streamed += d.push(id);
    streamed += d.finish();
    EXPECT_EQ(streamed, c["decoded"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Flavours, ByteBpeFixture, ::testing::Values("llama3", "qwen2", "gpt2"));

// Hand-computed: the Llama 3 fixture's pieces for a short text, checked token by token.
TEST(BpeTokenizer, HandComputedLlama3Pieces) {
  CausalTokenizer tok = CausalTokenizer::load(kDir + "/llama3");
  // "12345" -> \p{N}{1,3}: "123", "45"; " and" -> "Ġand" is one vocabulary token, so with
  // ignore_merges it is taken whole; "🙂" is 4 bytes, no merges among them -> 4 byte symbols.
  Ids ids = tok.encode("12345 and🙂", false);
  std::vector<std::string> pieces;
  for (int64_t id : ids) pieces.push_back(tok.id_to_token(id));
  // bytes_to_unicode: 0xF0 -> 'ð', 0x9F -> 'Ł', 0x99 -> 'Ļ', 0x82 -> 'Ĥ'
  EXPECT_EQ(pieces, (std::vector<std::string>{"1", "2", "3", "4", "5", "Ġand", "ð", "Ł", "Ļ", "Ĥ"}));
  EXPECT_EQ(tok.decode(ids, false), "12345 and🙂");
  // Special tokens in the text are single ids; add_special_tokens prepends <|begin_of_text|>.
  EXPECT_EQ(tok.encode("<|eot_id|>", true), (Ids{*tok.bos_id(), *tok.token_to_id("<|eot_id|>")}));
  EXPECT_EQ(tok.bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(tok.eos_id(), tok.token_to_id("<|eot_id|>"));
  EXPECT_TRUE(tok.is_special(*tok.eos_id()));
  // A 4-byte character streamed byte token by byte token comes out whole at the last one.
  StreamDecoder d(tok, false);
  EXPECT_EQ(d.push(ids[6]), "");
  EXPECT_EQ(d.push(ids[7]), "");
  EXPECT_EQ(d.push(ids[8]), "");
  EXPECT_EQ(d.push(ids[9]), "🙂");
  // An unfinished character at the end: one U+FFFD for the maximal invalid prefix (Rust's
  // from_utf8_lossy), unlike SentencePiece's one per byte.
  EXPECT_EQ(tok.decode({ids[6], ids[7], ids[8]}, false), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({ids[7], ids[8]}, false), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

// The Llama 3 chat template over the byte-level tokenizer: exactly one BOS (the template writes
// it; encode without add_special_tokens), turn markers as single ids.
TEST(BpeTokenizer, Llama3ChatTemplateGivesOneBos) {
  CausalTokenizer tok = CausalTokenizer::load(kDir + "/llama3");
  nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", " Hi! "}}});
  const std::string prompt = apply_chat_template(tok, messages, true);
  EXPECT_EQ(prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  Ids ids = tok.encode(prompt, false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.bos_id()), 1);
  EXPECT_EQ(ids.front(), *tok.bos_id());
  EXPECT_EQ(ids[1], *tok.token_to_id("<|start_header_id|>"));
  EXPECT_EQ(tok.decode(ids, false), prompt);
}

std::string parse_error(const std::string& json) {
  return error_of([&] { BpeTokenizer::from_json(json, "t/tokenizer.json"); });
}

TEST(BpeTokenizer, BadTokenizerJsonIsAnErrorNamingTheField) {
  const nlohmann::json good = core::read_json(kDir + "/llama3/tokenizer.json");
  ASSERT_EQ(parse_error(good.dump()), "");
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    return parse_error(j.dump());
  };
  EXPECT_THAT(parse_error("{"), HasSubstr("t/tokenizer.json"));
  EXPECT_THAT(parse_error("{"), HasSubstr("not valid JSON"));
  EXPECT_THAT(parse_error("[]"), HasSubstr("expected a JSON object"));
  EXPECT_THAT(parse_error("{}"), HasSubstr("model"));
  EXPECT_THAT(with([](auto& j) { j["model"]["type"] = "WordPiece"; }), HasSubstr("model.type"));
  EXPECT_THAT(with([](auto& j) { j["model"]["type"] = "WordPiece"; }), HasSubstr("WordPiece"));
  EXPECT_THAT(with([](auto& j) { j["model"]["byte_fallback"] = true; }), HasSubstr("model.byte_fallback"));
  EXPECT_THAT(with([](auto& j) { j["model"]["vocab"]["Ġthe"] = "x"; }), HasSubstr("model.vocab.Ġthe"));
  EXPECT_THAT(with([](auto& j) { j["model"]["vocab"]["Ġthe"] = -4; }), HasSubstr("model.vocab.Ġthe"));
  EXPECT_THAT(with([](auto& j) { j["model"]["merges"][3] = "nospace"; }), HasSubstr("model.merges[3]"));
  EXPECT_THAT(with([](auto& j) { j["model"]["merges"][3] = "zz qq"; }), HasSubstr("not in the vocabulary"));
  EXPECT_THAT(with([](auto& j) { j["model"]["merges"] = 5; }), HasSubstr("model.merges"));
  EXPECT_THAT(with([](auto& j) { j["model"]["vocab"].erase("Ā"); }), HasSubstr("byte 0x00"));
  EXPECT_THAT(with([](auto& j) { j["added_tokens"][0]["content"] = ""; }), HasSubstr("added_tokens[0].content"));
  EXPECT_THAT(with([](auto& j) { j["added_tokens"][1]["special"] = "yes"; }), HasSubstr("added_tokens[1].special"));
  EXPECT_THAT(with([](auto& j) { j["added_tokens"][0]["single_word"] = true; }), HasSubstr("single_word"));
  EXPECT_THAT(with([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }), HasSubstr("normalizer.type"));
  EXPECT_THAT(with([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Metaspace"; }),
              HasSubstr("pre_tokenizer.pretokenizers[0].type"));
  EXPECT_THAT(with([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; }),
              HasSubstr("pre_tokenizer.pretokenizers[0].pattern"));
  EXPECT_THAT(with([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext"; }),
              HasSubstr("MergedWithNext"));
  EXPECT_THAT(with([](auto& j) { j["pre_tokenizer"] = nullptr; }), HasSubstr("no ByteLevel step"));
  EXPECT_THAT(with([](auto& j) { j["decoder"] = {{"type", "WordPiece"}}; }), HasSubstr("decoder.type"));
  EXPECT_THAT(with([](auto& j) { j["post_processor"]["processors"][1]["type"] = "BertProcessing"; }),
              HasSubstr("post_processor.processors[1].type"));
  EXPECT_THAT(with([](auto& j) { j["post_processor"]["processors"][1]["special_tokens"] = nlohmann::json::object(); }),
              HasSubstr("post_processor.processors[1].special_tokens.<|begin_of_text|>"));
  // Non-UTF-8 text to encode.
  BpeTokenizer tok = BpeTokenizer::from_json(good.dump(), "t/tokenizer.json");
  EXPECT_THAT(error_of([&] { tok.encode("ok \xFF bad"); }), HasSubstr("UTF-8"));
  EXPECT_THAT(error_of([&] { tok.id_to_token(100000); }), HasSubstr("token id 100000"));
}

// tokenizer_config.json that disagrees with tokenizer.json is an error, not a silent change.
TEST(BpeTokenizer, ConfigDisagreeingWithTokenizerJsonIsAnError) {
  loom_test::TempDir tmp;
  const std::string d = tmp.path().string() + "/m";
  std::filesystem::create_directories(d);
  std::filesystem::copy_file(kDir + "/llama3/tokenizer.json", d + "/tokenizer.json");
  loom_test::write_file(d + "/tokenizer_config.json",
                        R"({"added_tokens_decoder": {"556": {"content": "<|other|>", "special": true}}})");
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(d); }), HasSubstr("added_tokens_decoder.556"));
  loom_test::write_file(d + "/tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(d); }), HasSubstr("eos_token"));
  // add_bos_token in tokenizer_config.json overrides the post-processor (LlamaTokenizerFast).
  loom_test::write_file(d + "/tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>", "add_bos_token": false})");
  CausalTokenizer tok = CausalTokenizer::load(d);
  EXPECT_EQ(tok.encode("a", true), tok.encode("a", false));
}

}  // namespace
}  // namespace loom::text
