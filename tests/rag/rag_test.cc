// loom::rag: analyzer, chunking properties, store, retrieval, answers, evaluation, and the
// `loom rag` CLI as a user runs it (ingest / search / ask / eval, kill -9 during ingest).
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <filesystem>
#include <random>
#include <set>

#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include "loom/core/files.h"
#include "loom/core/paths.h"
#include "loom/rag/analyzer.h"
#include "loom/rag/chunker.h"
#include "loom/rag/engine.h"
#include "loom/rag/eval.h"
#include "support/support.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

const std::string kBert = std::string(LOOM_TEST_DATA) + "/hf-tiny/bert-minilm";
const std::string kSample = (loom::core::data_dir() / "rag-sample").string();

TEST(RagAnalyzer, WordsFoldedAndCjkBigrams) {
  EXPECT_EQ(loom::rag::search_terms("Café, NAÏVE 3.14 自由平等!"),
            (std::vector<std::string>{"cafe", "naive", "3.14", "自由", "由平", "平等"}));
  EXPECT_EQ(loom::rag::search_terms("人"), (std::vector<std::string>{"人"}));
  EXPECT_TRUE(loom::rag::search_terms("!!! ???").empty());
}

// Random documents built from words, CJK runs, headings and over-long lines.
loom::rag::Document random_doc(std::mt19937& rng) {
  static const std::vector<std::string> words{"the", "moon", "orbits", "earth", "photosynthesis", "tokenization",
                                              "自由平等人人生而", "尊严", "3.14", "naïve", "x", "supercalifragilistic"};
  std::string md;
  std::uniform_int_distribution<int> nw(0, 60), pick(0, static_cast<int>(words.size()) - 1), kind(0, 9);
  for (int para = 0; para < 12; ++para) {
    const int k = kind(rng);
    if (k == 0) md += "## Heading " + std::to_string(para) + "\n\n";
    if (k == 1) md += "# Top " + std::to_string(para) + "\n\n";
    const int n = k == 2 ? 600 : nw(rng);  // k == 2: a huge line without sentence ends
    for (int w = 0; w < n; ++w) {
      md += words[static_cast<size_t>(pick(rng))];
      md += (w % 9 == 8 && k != 2) ? ". " : " ";
    }
    if (k == 3) md += std::string(300, 'a');  // one over-long word
    md += "\n\n";
  }
  loom::rag::Document d;
  d.source = "random.md";
  d.text = md;
  d.blocks = loom::rag::markdown_blocks(d.text, &d.title);
  return d;
}

TEST(RagChunker, EveryChunkWithinBudgetAndDocumentCoveredInOrder) {
  const auto tok = loom::text::WordPieceTokenizer::load(kBert);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 12; ++trial) {
    const auto doc = random_doc(rng);
    for (int64_t budget : {4, 16, 64}) {
      const loom::rag::ChunkOptions opt{budget, budget / 4};
      const auto chunks = loom::rag::chunk_document(doc, tok, opt);
      ASSERT_FALSE(chunks.empty());
      std::vector<bool> covered(doc.text.size(), false);
      for (size_t i = 0; i < chunks.size(); ++i) {
        const auto& c = chunks[i];
        EXPECT_EQ(c.text, doc.text.substr(c.begin, c.end - c.begin));
        EXPECT_EQ(c.n_tokens, tok.count_tokens(c.text));
        EXPECT_LE(c.n_tokens, budget) << "trial " << trial << " chunk " << i;
        if (i > 0) {
          EXPECT_GT(c.begin, chunks[i - 1].begin);
          EXPECT_GE(c.end, chunks[i - 1].end);
        }
        for (size_t b = c.begin; b < c.end; ++b) covered[b] = true;
      }
      for (const auto& blk : doc.blocks)
        for (size_t b = blk.begin; b < blk.end; ++b) {
          const char ch = doc.text[b];
          if (ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r') {
            ASSERT_TRUE(covered[b]) << "byte " << b << " not in any chunk (budget " << budget << ")";
          }
        }
    }
  }
}

TEST(RagChunker, HeadingPathsAndOverlap) {
  const auto tok = loom::text::WordPieceTokenizer::load(loom::rag::default_tokenizer_dir());
  loom::rag::Document d;
  d.text = "# A\n\nOne two three. Four five six. Seven eight nine.\n\n## B\n\nTen eleven.\n";
  d.blocks = loom::rag::markdown_blocks(d.text, &d.title);
  EXPECT_EQ(d.title, "A");
  const auto chunks = loom::rag::chunk_document(d, tok, {8, 4});
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks.front().heading_path, "A");
  EXPECT_EQ(chunks.back().heading_path, "A > B");
  EXPECT_THAT(chunks.back().text, HasSubstr("Ten eleven."));
  EXPECT_THAT(loom_test::error_of([&] { loom::rag::chunk_document(d, tok, {8, 8}); }), HasSubstr("overlap"));
}

TEST(RagMetrics, HandComputedAndNeverNan) {
  const auto m = loom::rag::rank_metrics({"x", "g", "y"}, {"g"});
  EXPECT_EQ(m.recall1, 0);
  EXPECT_EQ(m.recall5, 1);
  EXPECT_DOUBLE_EQ(m.mrr10, 0.5);
  EXPECT_DOUBLE_EQ(m.ndcg10, 1.0 / std::log2(3.0));
  const auto empty = loom::rag::rank_metrics({}, {});
  EXPECT_EQ(empty.ndcg10, 0);
  auto [em, f1] = loom::rag::squad_em_f1("The Moon orbits Earth.", {"moon orbits earth"});
  EXPECT_EQ(em, 1);
  EXPECT_EQ(f1, 1);
  std::tie(em, f1) = loom::rag::squad_em_f1("秦始皇统一中国", {"秦始皇"});
  EXPECT_EQ(em, 0);
  EXPECT_NEAR(f1, 2 * (3.0 / 7) * 1.0 / (3.0 / 7 + 1.0), 1e-12);
  std::tie(em, f1) = loom::rag::squad_em_f1("", {"x"});
  EXPECT_EQ(f1, 0);
}

TEST(RagStore, ForeignAndCorruptFilesRefusedUntouched) {
  loom_test::TempDir tmp;
  fs::create_directories(tmp.path() / "a");
  loom_test::write_file(tmp.path() / "a" / "store.sqlite", std::string(4096, 'x'));
  EXPECT_THAT(loom_test::error_of([&] { loom::rag::open_sqlite_store(tmp / "a", false); }), HasSubstr("store.sqlite"));
  EXPECT_EQ(loom_test::slurp(tmp.path() / "a" / "store.sqlite"), std::string(4096, 'x'));
  // A real SQLite database that is not a loom index.
  fs::create_directories(tmp.path() / "b");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp / "b/store.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_THAT(loom_test::error_of([&] { loom::rag::open_sqlite_store(tmp / "b", true); }),
              HasSubstr("not a loom rag index"));
}

TEST(RagFilter, ParsesAndMatches) {
  const auto f = loom::rag::Filter::parse("meta.lang = \"en\" AND meta.year >= 2020");
  EXPECT_TRUE(f.matches({{"lang", "en"}, {"year", 2021}}));
  EXPECT_FALSE(f.matches({{"lang", "en"}, {"year", 2019}}));
  EXPECT_FALSE(f.matches({{"year", 2021}}));
  EXPECT_THAT(loom_test::error_of([] { loom::rag::Filter::parse("lang = en"); }), HasSubstr("--where"));
}

std::vector<std::pair<std::string, std::string>> chunk_rows(const std::string& index) {
  sqlite3* db = nullptr;
  std::vector<std::pair<std::string, std::string>> out;
  if (sqlite3_open_v2((index + "/store.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return out;
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT id, text FROM chunks ORDER BY id", -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

TEST(RagCli, AskOnSampleDocumentsCitesOnlyRetrievedChunks) {
  loom_test::TempDir tmp;
  const std::string index = tmp / "idx";
  auto r = loom_test::run_loom({"rag", "ingest", "--index", index, kSample, "--json"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["files_ingested"], 5);  // four documents + SOURCES.md
  EXPECT_THAT(r.err, HasSubstr("5 files"));
  // Boilerplate of tea.html is gone.
  for (const auto& [id, text] : chunk_rows(index)) {
    EXPECT_THAT(text, ::testing::Not(HasSubstr("console.log")));
    EXPECT_THAT(text, ::testing::Not(HasSubstr("Copyright notice")));
  }
  for (const std::string q : {"What causes the tides?", "Why do leaves look green?", "长城有多长？"}) {
    r = loom_test::run_loom({"rag", "ask", "--index", index, q, "--json", "-k", "3"}, tmp.path());
    ASSERT_EQ(r.code, 0) << r.err;
    const auto a = nlohmann::json::parse(r.out);
    ASSERT_TRUE(a["found"].get<bool>()) << q;
    auto s = loom_test::run_loom({"rag", "search", "--index", index, q, "--json", "-k", "3"}, tmp.path());
    ASSERT_EQ(s.code, 0) << s.err;
    const auto hits = nlohmann::json::parse(s.out)["hits"];
    // Every [n] in the answer text is a listed source, and the sources are the retrieved chunks.
    const std::string text = a["answer"];
    std::set<int64_t> cited;
    for (size_t p = text.find('['); p != std::string::npos; p = text.find('[', p + 1)) {
      const size_t e = text.find(']', p);
      ASSERT_NE(e, std::string::npos);
      cited.insert(std::stoll(text.substr(p + 1, e - p - 1)));
    }
    ASSERT_FALSE(cited.empty()) << text;
    ASSERT_EQ(a["sources"].size(), hits.size());
    for (int64_t n : cited) {
      ASSERT_GE(n, 1);
      ASSERT_LE(n, static_cast<int64_t>(hits.size()));
      EXPECT_EQ(a["sources"][static_cast<size_t>(n - 1)]["id"], hits[static_cast<size_t>(n - 1)]["id"]);
    }
  }
  // The tides answer comes from moon.md's "Tides" section and says so in the text form.
  r = loom_test::run_loom({"rag", "ask", "--index", index, "What causes the tides?"}, tmp.path());
  EXPECT_THAT(r.out, HasSubstr("high tides"));
  // moon.md wraps that sentence over three lines: the answer quotes it whole, not from a line start.
  EXPECT_THAT(r.out, HasSubstr("This pull raises two bulges of water, one on the side facing the Moon and one on the "
                               "opposite side, and Earth's rotation carries coastlines through them, which causes two "
                               "high tides a day in most places. ["));
  EXPECT_THAT(r.out, HasSubstr("Sources:"));
  EXPECT_THAT(r.out, HasSubstr("moon.md > The Moon > Tides"));
  // Nothing relevant: says so.
  r = loom_test::run_loom({"rag", "ask", "--index", index, "quantum chromodynamics"}, tmp.path());
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("No relevant passage"));
  // A question with no searchable words.
  r = loom_test::run_loom({"rag", "ask", "--index", index, "☺☺☺ ???"}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no words loom can search"));
  // Dense search on a BM25-only index.
  r = loom_test::run_loom({"rag", "search", "--index", index, "moon", "--mode", "dense"}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("needs vectors"));
  // Re-ingest: nothing changes.
  r = loom_test::run_loom({"rag", "ingest", "--index", index, kSample, "--json"}, tmp.path());
  EXPECT_EQ(nlohmann::json::parse(r.out)["files_unchanged"], 5);
}

TEST(RagCli, BadInputSkippedAndListed) {
  loom_test::TempDir tmp;
  fs::create_directories(tmp.path() / "docs");
  loom_test::write_file(tmp.path() / "docs" / "ok.txt", "Plain good text about rivers.\n");
  loom_test::write_file(tmp.path() / "docs" / "empty.txt", "");
  loom_test::write_file(tmp.path() / "docs" / "latin1.txt", "caf\xe9 au lait\n");
  loom_test::write_file(tmp.path() / "docs" / "binary.md", std::string("\x7f" "ELF\0\0\x01", 7));
  loom_test::write_file(tmp.path() / "docs" / "huge.txt", std::string(200000, 'w') + " river " + std::string(100000, 'z'));
  const std::string index = tmp / "idx";
  auto r = loom_test::run_loom({"rag", "ingest", "--index", index, tmp / "docs"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("empty.txt (empty file)"));
  EXPECT_THAT(r.err, HasSubstr("latin1.txt (not valid UTF-8 (byte offset 3))"));
  EXPECT_THAT(r.err, HasSubstr("binary.md (binary file"));
  r = loom_test::run_loom({"rag", "search", "--index", index, "river rivers", "--json"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["hits"].size(), 2u);
  // JSONL record without the text field: file, line and field named.
  loom_test::write_file(tmp.path() / "bad.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n");
  r = loom_test::run_loom({"rag", "ingest", "--index", index, tmp / "bad.jsonl"}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.jsonl:2: 'text': missing text field"));
}

TEST(RagCli, DenseIndexRefusesAnotherModelAndRebuildsCorruptVectors) {
  loom_test::TempDir tmp;
  const std::string index = tmp / "idx";
  auto r = loom_test::run_loom({"rag", "ingest", "--index", index, "--embed", kBert, "--max-tokens", "60", kSample}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  r = loom_test::run_loom({"rag", "search", "--index", index, "tides moon", "--mode", "hybrid", "--json"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto hits = nlohmann::json::parse(r.out)["hits"];
  ASSERT_FALSE(hits.empty());
  EXPECT_GT(hits[0]["score"].get<double>(), 0);
  // Corrupt the FAISS file: it is rebuilt from SQLite and search gives the same answer.
  std::string faiss = loom_test::slurp(tmp.path() / "idx" / "vectors.faiss");
  ASSERT_GT(faiss.size(), 100u);
  faiss[faiss.size() / 2] ^= 0x55;
  loom_test::write_file(tmp.path() / "idx" / "vectors.faiss", faiss);
  auto r2 = loom_test::run_loom({"rag", "search", "--index", index, "tides moon", "--mode", "hybrid", "--json"}, tmp.path());
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(nlohmann::json::parse(r2.out)["hits"], hits);
  fs::remove(tmp.path() / "idx" / "vectors.faiss");
  r2 = loom_test::run_loom({"rag", "search", "--index", index, "tides moon", "--mode", "hybrid", "--json"}, tmp.path());
  EXPECT_EQ(nlohmann::json::parse(r2.out)["hits"], hits);
  // Another embedding model (same architecture, other weights config) is refused, naming both.
  fs::copy(kBert, tmp.path() / "other-model", fs::copy_options::recursive);
  auto cfg = loom::core::read_json(tmp / "other-model/config.json");
  cfg["layer_norm_eps"] = 1e-6;
  loom_test::write_file(tmp.path() / "other-model" / "config.json", cfg.dump());
  r = loom_test::run_loom({"rag", "search", "--index", index, "moon", "--embed", tmp / "other-model"}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("bert-minilm@"));
  EXPECT_THAT(r.err, HasSubstr("other-model@"));
  r = loom_test::run_loom({"rag", "ingest", "--index", index, "--embed", tmp / "other-model", "--max-tokens", "60", kSample}, tmp.path());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("bert-minilm@"));
}

TEST(RagCli, KilledIngestResumesToTheSameStore) {
  loom_test::TempDir tmp;
  fs::create_directories(tmp.path() / "docs");
  std::mt19937 rng(11);
  for (int f = 0; f < 24; ++f) {
    std::string text;
    for (int p = 0; p < 30; ++p) {
      text += "## Part " + std::to_string(p) + "\n\n";
      for (int s = 0; s < 8; ++s) text += "Sentence " + std::to_string(rng() % 100000) + " of file " + std::to_string(f) + " talks about topic " + std::to_string(rng() % 50) + ". ";
      text += "\n\n";
    }
    loom_test::write_file(tmp.path() / "docs" / ("doc" + std::to_string(f) + ".md"), text);
  }
  const std::vector<std::string> args_ref{"rag", "ingest", "--index", tmp / "ref", "--embed", kBert, "--max-tokens", "40", tmp / "docs"};
  ASSERT_EQ(loom_test::run_loom(args_ref, tmp.path()).code, 0);
  const auto want = chunk_rows(tmp / "ref");
  ASSERT_GT(want.size(), 100u);
  const std::vector<std::string> args{"rag", "ingest", "--index", tmp / "idx", "--embed", kBert, "--max-tokens", "40", tmp / "docs"};
  std::uniform_int_distribution<int> delay(150, 2500);
  int kills = 0;
  for (int i = 0; i < 5; ++i) kills += loom_test::run_loom_killed_after(args, tmp.path(), delay(rng)) == 128 + SIGKILL ? 1 : 0;
  auto r = loom_test::run_loom(args, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(chunk_rows(tmp / "idx"), want) << kills << " kills landed";
  // Search results equal the uninterrupted index's (the FAISS file was rebuilt consistently).
  auto a = loom_test::run_loom({"rag", "search", "--index", tmp / "idx", "topic 7 file 3", "--mode", "hybrid", "--json"}, tmp.path());
  auto b = loom_test::run_loom({"rag", "search", "--index", tmp / "ref", "topic 7 file 3", "--mode", "hybrid", "--json"}, tmp.path());
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  // --prune removes files that are gone.
  fs::remove(tmp.path() / "docs" / "doc0.md");
  r = loom_test::run_loom({"rag", "ingest", "--index", tmp / "idx", "--embed", kBert, "--max-tokens", "40", "--prune", "--json", tmp / "docs"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["files_removed"], 1);
  for (const auto& [id, text] : chunk_rows(tmp / "idx")) EXPECT_THAT(text, ::testing::Not(HasSubstr("of file 0 ")));
}

TEST(RagCli, EvalOnSquadAndBeirIsDefined) {
  loom_test::TempDir tmp;
  const nlohmann::json squad = {{"data", {{{"title", "Moon"}, {"paragraphs", {
      {{"context", "The Moon orbits Earth every 27.3 days."}, {"qas", {{{"id", "q1"}, {"question", "How long does the Moon take to orbit Earth?"}, {"answers", {{{"text", "27.3 days"}, {"answer_start", 28}}}}}}}},
      {{"context", "Tea began in southwest China as a medicine."}, {"qas", {{{"id", "q2"}, {"question", "Where did tea begin?"}, {"answers", {{{"text", "southwest China"}, {"answer_start", 13}}}}}}}}}}}}}};
  loom_test::write_file(tmp.path() / "qa.json", squad.dump());
  auto r = loom_test::run_loom({"rag", "eval", "--qa", tmp / "qa.json", "--json"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["questions"], 2);
  EXPECT_EQ(j["modes"]["bm25"]["recall@1"], 1.0);
  EXPECT_EQ(j["modes"]["bm25"]["mrr@10"], 1.0);
  EXPECT_GT(j["modes"]["bm25"]["extractive_f1"].get<double>(), 0.0);
  // BEIR directory, dense + hybrid with the tiny model; an empty qrels set gives zeros, not NaN.
  fs::create_directories(tmp.path() / "beir" / "qrels");
  loom_test::write_file(tmp.path() / "beir" / "corpus.jsonl", "{\"_id\": \"d1\", \"title\": \"\", \"text\": \"rivers flow to the sea\"}\n{\"_id\": \"d2\", \"text\": \"mountains are high\"}\n");
  loom_test::write_file(tmp.path() / "beir" / "queries.jsonl", "{\"_id\": \"1\", \"text\": \"where do rivers flow\"}\n");
  loom_test::write_file(tmp.path() / "beir" / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\t1\n");
  r = loom_test::run_loom({"rag", "eval", "--qa", tmp / "beir", "--embed", kBert, "--mode", "bm25,dense,hybrid", "--json"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto b = nlohmann::json::parse(r.out);
  EXPECT_EQ(b["modes"]["bm25"]["recall@1"], 1.0);
  EXPECT_TRUE(b["modes"].contains("hybrid"));
  loom_test::write_file(tmp.path() / "beir" / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n");
  r = loom_test::run_loom({"rag", "eval", "--qa", tmp / "beir"}, tmp.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("nan")));
}

}  // namespace
