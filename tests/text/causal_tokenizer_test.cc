// CausalTokenizer (SentencePiece path) against Hugging Face transformers 4.46.3 reference ids
// and texts of the hf-tiny gemma / gemma2 fixtures, SentencePiece's own decoder on random ids,
// and the streaming invariant (StreamDecoder output == one-shot decode).
#include "loom/text/causal_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/utf8.h"
#include "loom/text/sentencepiece.h"
#include "support/support.h"

namespace loom::text {
namespace {

using Ids = std::vector<int64_t>;
using ::testing::HasSubstr;

const std::string kData = LOOM_TEST_DATA;

std::string stream_decode(const CausalTokenizer& tok, const Ids& ids, bool skip) {
  StreamDecoder d(tok, skip);
  std::string out;
  for (int64_t id : ids) {
    std::string piece = d.push(id);
    EXPECT_TRUE(core::is_valid_utf8(piece));
    out += piece;
  }
  return out + d.finish();
}

void check_fixture(const std::string& name) {
  SCOPED_TRACE(name);
  const std::string dir = kData + "/hf-tiny/" + name;
  CausalTokenizer tok = CausalTokenizer::load(dir);
  EXPECT_EQ(tok.kind(), "sentencepiece");
  EXPECT_EQ(tok.vocab_size(), 800);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.bos_token(), "<bos>");
  EXPECT_EQ(tok.eos_token(), "<eos>");
  EXPECT_EQ(tok.token_to_id("<start_of_turn>"), 5);
  EXPECT_EQ(tok.token_to_id("<end_of_turn>"), 6);
  EXPECT_EQ(tok.token_to_id("no such piece"), std::nullopt);
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_FALSE(tok.add_eos_token());
  EXPECT_TRUE(tok.is_special(2));
  EXPECT_TRUE(tok.is_special(5));
  EXPECT_FALSE(tok.is_special(555));
  EXPECT_EQ(tok.config()["tokenizer_class"], "GemmaTokenizer");

  nlohmann::json ref = core::read_json(dir + "/reference.json");
  const auto& cases = ref["cases"];
  ASSERT_EQ(cases.size(), 5u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string prompt = c["prompt"];
    SCOPED_TRACE("case " + std::to_string(i) + ": " + prompt);
    const Ids expected = c["input_ids"].get<Ids>();
    // Case 4 is the chat-template output: it holds its <bos>, HF tokenizes it without
    // add_special_tokens; the others are tokenizer(prompt).
    const bool add_special = i != 4;
    if (i == 4) {
      EXPECT_EQ(prompt, ref["chat_template"]["text"].get<std::string>());
      EXPECT_EQ(expected, ref["chat_template"]["input_ids"].get<Ids>());
    }
    EXPECT_EQ(tok.encode(prompt, add_special), expected);
    EXPECT_EQ(tok.decode(expected, false), c["decoded_prompt"].get<std::string>());
    EXPECT_EQ(stream_decode(tok, expected, false), c["decoded_prompt"].get<std::string>());
    const Ids greedy = c["greedy"]["new_ids"].get<Ids>();
    EXPECT_EQ(tok.decode(greedy, false), c["greedy"]["text"].get<std::string>());
    EXPECT_EQ(stream_decode(tok, greedy, false), c["greedy"]["text"].get<std::string>());
  }
  // Skipping special tokens drops <bos> and the turn markers; the prompt text stays.
  EXPECT_EQ(tok.decode(cases[0]["input_ids"].get<Ids>(), true), "The quick brown fox");
  EXPECT_EQ(tok.decode(ref["chat_template"]["input_ids"].get<Ids>(), true),
            "user\nTranslate to Chinese: Everyone has the right to education.\nmodel\n人人都有受教育的权利。\n"
            "user\nAnd: Hello, world!\nmodel\n");
}

TEST(CausalTokenizer, GemmaMatchesHfReference) { check_fixture("gemma"); }
TEST(CausalTokenizer, Gemma2MatchesHfReference) { check_fixture("gemma2"); }

// decode() equals SentencePiece's own Decode on random id sequences of the vocabulary (ids that
// are not added tokens, whose surface HF takes from tokenizer_config.json instead), including
// runs of byte pieces that do not form valid UTF-8; streaming equals one-shot on all of them.
TEST(CausalTokenizer, DecodeMatchesSentencePieceOnRandomIds) {
  const std::string dir = kData + "/hf-tiny/gemma";
  CausalTokenizer tok = CausalTokenizer::load(dir);
  SentencePiece sp(dir + "/tokenizer.model");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> any(7, 799);
  std::uniform_int_distribution<int64_t> byte_piece(7, 7 + 255);  // <0x00>.. in this model
  ASSERT_EQ(tok.id_to_token(7 + 0xF0), "<0xF0>");
  for (int trial = 0; trial < 300; ++trial) {
    Ids ids;
    const int n = 1 + trial % 12;
    for (int k = 0; k < n; ++k) ids.push_back(trial % 2 ? byte_piece(rng) : any(rng));
    std::vector<std::string> pieces;
    for (int64_t id : ids) pieces.push_back(tok.id_to_token(id));
    const std::string expected = sp.decode_pieces(pieces);
    EXPECT_EQ(tok.decode(ids, false), expected) << "trial " << trial;
    EXPECT_EQ(stream_decode(tok, ids, false), expected) << "trial " << trial;
  }
}

// A 4-byte character split over byte tokens is emitted only when complete.
TEST(CausalTokenizer, StreamDecoderHoldsIncompleteCharacters) {
  CausalTokenizer tok = CausalTokenizer::load(kData + "/hf-tiny/gemma");
  Ids ids = tok.encode("a 🙂 b", false);
  std::vector<std::string> outs;
  StreamDecoder d(tok, true);
  for (int64_t id : ids) outs.push_back(d.push(id));
  outs.push_back(d.finish());
  std::string joined;
  for (const auto& o : outs) joined += o;
  EXPECT_EQ(joined, "a 🙂 b");
  EXPECT_NE(std::find(outs.begin(), outs.end(), "🙂"), outs.end());  // emitted whole, at its last byte
  // An unfinished character at the end becomes one U+FFFD per byte (SentencePiece's rule).
  StreamDecoder d2(tok, false);
  EXPECT_EQ(d2.push(7 + 0xF0), "");
  EXPECT_EQ(d2.push(7 + 0x9F), "");
  EXPECT_EQ(d2.finish(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(CausalTokenizer, BadInputIsAnErrorNamingTheFileAndField) {
  using loom_test::error_of;
  loom_test::TempDir tmp;
  const std::string src = kData + "/hf-tiny/gemma";
  auto make = [&](const std::string& config) {
    const std::string d = tmp.path().string() + "/m";
    std::filesystem::create_directories(d);
    std::filesystem::copy_file(src + "/tokenizer.model", d + "/tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
    loom_test::write_file(d + "/tokenizer_config.json", config);
    return d;
  };
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(tmp.path().string() + "/nope"); }), HasSubstr("not found"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(tmp.path().string()); }), HasSubstr("expected tokenizer.json or tokenizer.model"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make("{not json")); }),
              HasSubstr("tokenizer_config.json"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make("[1]")); }), HasSubstr("expected a JSON object"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make(R"({"add_bos_token": "yes"})")); }),
              HasSubstr("add_bos_token"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make(R"({"added_tokens_decoder": {"x": {"content": "<a>"}}})")); }),
              HasSubstr("added_tokens_decoder.x"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make(R"({"added_tokens_decoder": {"9": {"content": 3}}})")); }),
              HasSubstr("added_tokens_decoder.9.content"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make("{\"added_tokens_decoder\": {\"9\": {\"content\": \"\\udc00\"}}}")); }),
              HasSubstr("tokenizer_config.json"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make(R"({"bos_token": "<nope>"})")); }),
              HasSubstr("bos_token"));
  EXPECT_THAT(error_of([&] { CausalTokenizer::load(make(R"({"additional_special_tokens": [1]})")); }),
              HasSubstr("additional_special_tokens[0]"));
  CausalTokenizer tok = CausalTokenizer::load(src);
  EXPECT_THAT(error_of([&] { tok.encode("bad \xC3\x28 utf8", true); }), HasSubstr("UTF-8"));
  EXPECT_THAT(error_of([&] { tok.decode({2, 800}, false); }), HasSubstr("token id 800"));
  EXPECT_THAT(error_of([&] { tok.decode({-1}, false); }), HasSubstr("token id -1"));
}

}  // namespace
}  // namespace loom::text
