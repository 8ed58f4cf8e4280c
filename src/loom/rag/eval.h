// loom::rag evaluation: retrieval metrics (recall@k, MRR@10, nDCG@10; Manning et al.,
// "Introduction to Information Retrieval" ch. 8, binary relevance) per retrieval mode, and the
// SQuAD exact match / F1 of the extractive answer (Rajpurkar et al. 2016, the official v1.1
// evaluate script's normalisation; CJK characters count as one token each, as MLQA's mixed
// segmentation does, so Chinese F1 is defined). Every metric is 0, never NaN, on empty input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/rag/engine.h"

namespace loom::rag {

/// Options of `loom rag eval`.
struct EvalOptions {
  std::string qa;             ///< SQuAD-format JSON file, or a BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)
  std::string docs_qa;        ///< SQuAD file whose paragraphs form the corpus (cross-lingual: parallel to `qa`); "" = qa's own
  std::string index_dir;      ///< "" = a fresh temporary index, one chunk per paragraph / corpus document
  std::string embed_dir;      ///< embedding model for dense / hybrid ("" = bm25 only)
  std::vector<Mode> modes{Mode::kBm25};
  int64_t limit = 0;          ///< evaluate only the first N questions (0 = all)
  int64_t answer_k = 5;       ///< chunks the extractive answer reads
};

/// SQuAD answer normalisation: lower-case, punctuation removed (ASCII and Unicode P*), English
/// articles removed, CJK characters split; returns the tokens.
std::vector<std::string> squad_tokens(const std::string& s);
/// max over golds of exact match (1/0) and token F1 of `prediction`.
std::pair<double, double> squad_em_f1(const std::string& prediction, const std::vector<std::string>& golds);

/// Ranking metrics of one query: `ranked` are retrieved ids best first, `relevant` the gold ids.
struct QueryMetrics {
  double recall1 = 0, recall5 = 0, recall10 = 0, recall20 = 0, mrr10 = 0, ndcg10 = 0;
};
QueryMetrics rank_metrics(const std::vector<std::string>& ranked, const std::vector<std::string>& relevant);

/// Runs the evaluation; returns {"dataset", "questions", "corpus", "modes": {mode: {metrics}}}.
/// Throws loom::Error naming the file (and record) for malformed SQuAD / BEIR input.
nlohmann::json evaluate(const EvalOptions& options, std::FILE* log);

}  // namespace loom::rag
