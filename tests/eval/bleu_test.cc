// BLEU against sacreBLEU 2.x. Three kinds of expected values:
//  * hand-computed cases (the n-gram counts are worked out in the comments);
//  * values published by sacreBLEU itself: its README ("Using SacreBLEU from Python":
//    BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18))
//    and its test suite (github mjpost/sacrebleu test/test_bleu.py, test/test_sentence_bleu.py),
//    cited per test;
//  * all of the above were also re-run with sacreBLEU's own source (v2.6.0, Python 3.11),
//    which printed the same numbers.
#include "loom/eval/bleu.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace loom::eval {
namespace {

BleuOptions with_tok(BleuTokenizer t) {
  BleuOptions o;
  o.tokenize = t;
  return o;
}

// sacreBLEU's raw_corpus_bleu(): floor smoothing, tokenize none, effective order.
BleuOptions raw_options(double floor_value) {
  BleuOptions o;
  o.tokenize = BleuTokenizer::kNone;
  o.smooth = BleuSmooth::kFloor;
  o.smooth_value = floor_value;
  o.effective_order = true;
  return o;
}

TEST(Bleu, HandComputedSingleReference) {
  // hyp "the cat sat on the mat" / ref "the cat is on the mat" (6 tokens each, BP = 1):
  //  1-grams: the×2 cat sat on mat; matches the×2 cat on mat            = 5/6
  //  2-grams: the-cat cat-sat sat-on on-the the-mat; matches the-cat on-the the-mat = 3/5
  //  3-grams: 4, only "on the mat" matches                              = 1/4
  //  4-grams: 3, none match -> exp smoothing: 1 / (2 * 3)
  //  BLEU = 100 * (5/6 * 3/5 * 1/4 * 1/6)^(1/4) = 100 * (1/48)^(1/4) = 37.9918...
  auto s = corpus_bleu({"the cat sat on the mat"}, {{"the cat is on the mat"}}, with_tok(BleuTokenizer::kNone));
  EXPECT_EQ(s.counts, (std::vector<int64_t>{5, 3, 1, 0}));
  EXPECT_EQ(s.totals, (std::vector<int64_t>{6, 5, 4, 3}));
  EXPECT_NEAR(s.precisions[3], 100.0 / 6, 1e-12);
  EXPECT_NEAR(s.score, 100 * std::pow(1.0 / 48, 0.25), 1e-9);
  EXPECT_DOUBLE_EQ(s.bp, 1.0);
  EXPECT_EQ(s.verbose(), "83.3/60.0/25.0/16.7 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");
}

TEST(Bleu, HandComputedMultiReference) {
  // hyp "a b c d", refs "a b x y z" (5 tokens) and "a y c d" (4 tokens).
  //  closest reference length: |4-5| = 1, |4-4| = 0 -> 4 (BP = 1)
  //  1-grams: a b c d all occur in some reference                   = 4/4
  //  2-grams: a-b (ref 1), c-d (ref 2); b-c in neither               = 2/3
  //  3-grams 0/2 -> 1/(2*2); 4-grams 0/1 -> 1/(4*1)
  //  BLEU = 100 * (1 * 2/3 * 1/4 * 1/4)^(1/4) = 45.180...
  // With the second reference alone: 3/4, 1/3 (c-d), 1/(2*2), 1/(4*1) -> 100 * (1/64)^(1/4).
  auto opts = with_tok(BleuTokenizer::kNone);
  auto multi = corpus_bleu({"a b c d"}, {{"a b x y z"}, {"a y c d"}}, opts);
  EXPECT_EQ(multi.counts, (std::vector<int64_t>{4, 2, 0, 0}));
  EXPECT_EQ(multi.ref_len, 4);
  EXPECT_NEAR(multi.score, 100 * std::pow(2.0 / 3 / 16, 0.25), 1e-9);
  auto single = corpus_bleu({"a b c d"}, {{"a y c d"}}, opts);
  EXPECT_EQ(single.counts, (std::vector<int64_t>{3, 1, 0, 0}));
  EXPECT_NEAR(single.score, 100 * std::pow(1.0 / 64, 0.25), 1e-9);
  // Equal distance to two lengths: the shorter reference length is used (hyp 4, refs 3 and 5).
  auto tie = bleu_segment_stats("a b c d", {"a b c d e", "a b c"}, opts);
  EXPECT_EQ(tie.ref_len, 3);
}

TEST(Bleu, HandComputedBrevityPenaltyAndEffectiveOrder) {
  // hyp "the cat" (2) vs ref of 6 tokens: 1-grams 2/2, 2-grams 1/1, no 3- or 4-grams.
  // Corpus BLEU (no effective order): orders 3 and 4 have precision 0 -> score 0.
  // Sentence BLEU (effective order): mean over orders 1-2 = 1, times BP = exp(1 - 6/2).
  auto opts = with_tok(BleuTokenizer::kNone);
  auto corpus = corpus_bleu({"the cat"}, {{"the cat sat on the mat"}}, opts);
  EXPECT_EQ(corpus.score, 0.0);
  EXPECT_NEAR(corpus.bp, std::exp(-2.0), 1e-15);
  opts.effective_order = true;
  auto sent = sentence_bleu("the cat", {"the cat sat on the mat"}, opts);
  EXPECT_NEAR(sent.score, 100 * std::exp(-2.0), 1e-9);  // 13.53
  EXPECT_NEAR(sentence_bleu("the cat", {"the cat sat on the mat"}).score, 100 * std::exp(-2.0), 1e-9);
}

TEST(Bleu, HandComputedChineseWithZhTokenizer) {
  // zh splits every Hanzi: 我 爱 北 京 。 / 我 爱 上 海 。 and 他 们 赢 了 。 / 他 们 输 了 。
  //  1-grams: 3 + 4 = 7/10; 2-grams: 我爱 + 他们, 了。 = 3/8; 3-grams 0/6 -> 1/12; 4-grams
  //  0/4 -> 1/16. BLEU = 100 * (0.7 * 0.375 / 12 / 16)^(1/4) = 19.23 (sacreBLEU: same).
  auto s = corpus_bleu({"我爱北京。", "他们赢了。"}, {{"我爱上海。", "他们输了。"}}, with_tok(BleuTokenizer::kZh));
  EXPECT_EQ(s.counts, (std::vector<int64_t>{7, 3, 0, 0}));
  EXPECT_EQ(s.totals, (std::vector<int64_t>{10, 8, 6, 4}));
  EXPECT_NEAR(s.score, 100 * std::pow(0.7 * 0.375 / 12 / 16, 0.25), 1e-9);
  // The 13a tokenizer sees one token per sentence: no match at all.
  EXPECT_EQ(corpus_bleu({"我爱北京。", "他们赢了。"}, {{"我爱上海。", "他们输了。"}}).score, 0.0);
}

// sacreBLEU README ("Using SacreBLEU from Python") and test/test_bleu.py::test_corpus_bleu_cases.
const std::vector<std::string> kHyps = {"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
const std::vector<std::vector<std::string>> kRefs = {
    {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
    {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};

TEST(Bleu, SacreBleuReadmeExample) {
  auto s = corpus_bleu(kHyps, kRefs);
  EXPECT_NEAR(s.score, 48.530827, 1e-6);
  EXPECT_EQ(fmt::format("{:.2f} {}", s.score, s.verbose()),
            "48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  EXPECT_EQ(bleu_signature({}, 2, "2.0.0"), "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.0.0");
  EXPECT_NEAR(corpus_bleu(kHyps, kRefs, with_tok(BleuTokenizer::kNone)).score, 49.1919566, 1e-6);
  EXPECT_NEAR(corpus_bleu(kHyps, kRefs, with_tok(BleuTokenizer::kIntl)).score, 43.91623493, 1e-6);
  BleuOptions none;
  none.smooth = BleuSmooth::kNone;
  EXPECT_NEAR(corpus_bleu(kHyps, kRefs, none).score, 48.530827, 1e-6);
  // Empty hypotheses are scored, not dropped.
  EXPECT_EQ(corpus_bleu({"", "", ""}, kRefs).score, 0.0);
}

TEST(Bleu, SacreBleuMaxNgramOrder) {
  // test/test_bleu.py::test_bleu_max_order
  const char* expected[] = {"77.65", "60.50", "53.93", "48.53", "46.14", "43.28"};
  for (int order = 1; order <= 6; ++order) {
    BleuOptions o;
    o.max_ngram_order = order;
    EXPECT_EQ(fmt::format("{:.2f}", corpus_bleu(kHyps, kRefs, o).score), expected[order - 1]) << order;
  }
}

TEST(Bleu, SacreBleuRawCorpusCases) {
  // test/test_bleu.py: test_raw_bleu_cases, test_case_effective_order, test_case_statistics,
  // test_case_offset (raw_corpus_bleu = floor smoothing, tokenize none, effective order).
  EXPECT_EQ(corpus_bleu({"this is a test", "another test"}, {{"ref1", "ref2"}}, raw_options(0.01)).score, 0.0);
  EXPECT_NEAR(corpus_bleu({"this is a test"}, {{"this is a test"}}, raw_options(0.01)).score / 100, 1.0, 1e-8);
  EXPECT_NEAR(corpus_bleu({"this is a fest"}, {{"this is a test"}}, raw_options(0.01)).score / 100, 0.223606797749979,
              1e-8);
  EXPECT_NEAR(corpus_bleu({"test"}, {{"a test"}}, raw_options(0.01)).score / 100, 0.3678794411714425, 1e-8);
  EXPECT_NEAR(corpus_bleu({"a test"}, {{"a test"}}, raw_options(0.01)).score / 100, 1.0, 1e-8);
  EXPECT_NEAR(corpus_bleu({"a little test"}, {{"a test"}}, raw_options(0.01)).score / 100, 0.03218297948685433, 1e-8);
  auto st = corpus_bleu({"am I am a character sequence"}, {{"I am a symbol string sequence a a"}}, raw_options(0.1));
  EXPECT_EQ(st.counts, (std::vector<int64_t>{4, 2, 1, 0}));
  EXPECT_EQ(st.totals, (std::vector<int64_t>{6, 5, 4, 3}));
  EXPECT_NEAR(st.score / 100, 0.1555722182, 1e-8);
  EXPECT_EQ(corpus_bleu({"am I am a character sequence"}, {{"I am a symbol string sequence a a"}}, raw_options(0.0)).score,
            0.0);
  auto dflt = raw_options(0);
  dflt.smooth_value = -1;  // sacreBLEU's default floor value 0.1
  EXPECT_NEAR(corpus_bleu({"am I am a character sequence"}, {{"I am a symbol string sequence a a"}}, dflt).score / 100,
              0.1555722182, 1e-8);
}

TEST(Bleu, SacreBleuScoringFromStatistics) {
  // test/test_bleu.py::test_case_scoring: compute_bleu([9,7,5,3], [10,8,6,4], 11, 11), no smoothing.
  BleuStats st{11, 11, {9, 7, 5, 3}, {10, 8, 6, 4}};
  BleuOptions o;
  o.smooth = BleuSmooth::kNone;
  EXPECT_NEAR(bleu_from_stats(st, o).score / 100, 0.8375922397, 1e-8);
  // test_case_degenerate_stats (floor smoothing): all 0.
  o.smooth = BleuSmooth::kFloor;
  for (auto [stats, value] : std::vector<std::pair<BleuStats, double>>{
           {{0, 1, {0, 0, 0, 0}, {4, 4, 2, 1}}, 0.0},
           {{14, 10, {0, 0, 0, 0}, {10, 11, 12, 0}}, 0.0},
           {{0, 0, {0, 0, 0, 0}, {0, 0, 0, 0}}, 0.0},
           {{6, 6, {6, 5, 4, 0}, {6, 5, 4, 3}}, 0.0},
           {{0, 0, {0, 0, 0, 0}, {0, 0, 0, 0}}, 0.1},
           {{1, 5, {0, 0, 0, 0}, {0, 0, 0, 0}}, 0.01}}) {
    o.smooth_value = value;
    EXPECT_EQ(bleu_from_stats(stats, o).score, 0.0);
  }
}

TEST(Bleu, SacreBleuSentenceBleuSmoothing) {
  // test/test_sentence_bleu.py (example from sacreBLEU issue #98), tolerance 1e-3 as there.
  const std::string ref = "producţia de zahăr brut se exprimă în zahăr alb;";
  const std::string sys = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
  struct Case {
    BleuSmooth smooth;
    double value;
    BleuTokenizer tok;
    double expected;
  };
  const Case cases[] = {{BleuSmooth::kExp, -1, BleuTokenizer::k13a, 8.493},
                        {BleuSmooth::kNone, -1, BleuTokenizer::k13a, 0.0},
                        {BleuSmooth::kFloor, -1, BleuTokenizer::k13a, 4.51688},
                        {BleuSmooth::kFloor, 0.1, BleuTokenizer::k13a, 4.51688},
                        {BleuSmooth::kFloor, 0.5, BleuTokenizer::k13a, 10.10},
                        {BleuSmooth::kAddK, -1, BleuTokenizer::k13a, 14.882},
                        {BleuSmooth::kAddK, 1, BleuTokenizer::k13a, 14.882},
                        {BleuSmooth::kAddK, 2, BleuTokenizer::k13a, 21.389},
                        {BleuSmooth::kExp, -1, BleuTokenizer::kNone, 7.347},
                        {BleuSmooth::kExp, -1, BleuTokenizer::kIntl, 8.493}};
  for (const auto& c : cases) {
    BleuOptions o = sentence_bleu_defaults();
    o.smooth = c.smooth;
    o.smooth_value = c.value;
    o.tokenize = c.tok;
    EXPECT_NEAR(sentence_bleu(sys, {ref}, o).score, c.expected, 1e-3) << static_cast<int>(c.smooth) << " " << c.value;
    // Zero-match example (issue #141): "this is a cat" vs "okay thanks" is 0 for every method.
    EXPECT_EQ(sentence_bleu("this is a cat", {"okay thanks"}, o).score, 0.0);
  }
  BleuOptions floor;
  floor.smooth = BleuSmooth::kFloor;
  EXPECT_EQ(bleu_signature(floor, 1, "x"), "nrefs:1|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:x");
}

TEST(Bleu, StatisticsAddUpToCorpusScore) {
  BleuStats sum;
  for (size_t i = 0; i < kHyps.size(); ++i) sum += bleu_segment_stats(kHyps[i], {kRefs[0][i], kRefs[1][i]});
  EXPECT_DOUBLE_EQ(bleu_from_stats(sum).score, corpus_bleu(kHyps, kRefs).score);
  // Trailing whitespace is stripped before tokenizing (rstrip), so it changes nothing.
  EXPECT_EQ(bleu_segment_stats("a b \t", {"a b"}, with_tok(BleuTokenizer::kNone)).hyp_len, 2);
}

TEST(Bleu, Errors) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {{"a"}}), Error);        // misaligned
  EXPECT_THROW(corpus_bleu({"a"}, {}), Error);                  // no references
  EXPECT_THROW(corpus_bleu({"a \xFF"}, {{"a"}}), Error);        // invalid UTF-8
  try {
    corpus_bleu({"ok", "bad \xFF"}, {{"ok", "ok"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.where().line, 2);
  }
}

}  // namespace
}  // namespace loom::eval
