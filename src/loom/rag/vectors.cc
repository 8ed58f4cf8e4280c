#include "loom/rag/vectors.h"

#include <algorithm>
#include <filesystem>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::rag {
namespace {

std::string fnv_hex(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

}  // namespace

struct VectorIndex::Impl {
  std::unique_ptr<faiss::Index> index;
};

VectorIndex::~VectorIndex() = default;

std::unique_ptr<VectorIndex> VectorIndex::open(const std::string& dir, const Store& store, bool write,
                                               std::string* rebuilt_reason) {
  const std::string faiss_path = dir + "/vectors.faiss", json_path = dir + "/vectors.json";
  const int64_t generation = store.generation();
  auto v = std::unique_ptr<VectorIndex>(new VectorIndex());
  v->impl_ = std::make_unique<Impl>();
  std::string reason;
  if (!core::file_exists(faiss_path) || !core::file_exists(json_path)) {
    reason = "missing";
  } else {
    try {
      const nlohmann::json info = core::read_json(json_path);
      const std::string bytes = core::read_file(faiss_path);
      if (info.value("generation", int64_t{-1}) != generation) {
        reason = "stale (store changed since it was written)";
      } else if (info.value("checksum", std::string()) != fnv_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())) {
        reason = "checksum mismatch (corrupt file)";
      } else {
        faiss::VectorIOReader r;
        r.data.assign(bytes.begin(), bytes.end());
        v->impl_->index.reset(faiss::read_index(&r));
        v->dim_ = v->impl_->index->d;
        v->hnsw_ = info.value("kind", std::string()) == "hnsw";
      }
    } catch (const faiss::FaissException& e) {
      reason = std::string("unreadable FAISS file: ") + e.what();
    } catch (const loom::Error& e) {
      reason = std::string("unreadable: ") + e.what();
    } catch (const nlohmann::json::exception& e) {
      reason = std::string("unreadable vectors.json: ") + e.what();
    }
  }
  if (rebuilt_reason) *rebuilt_reason = reason;
  if (reason.empty()) return v;

  // Rebuild from the store.
  std::vector<float> data;
  std::vector<faiss::Index::idx_t> ids;
  int64_t dim = 0;
  store.for_each_vector([&](int64_t row, const float* p, int64_t d) {
    if (dim == 0) dim = d;
    if (d != dim) fail(Where{dir + "/store.sqlite"}, "chunk row {} has a {}-dim vector, others {}", row, d, dim);
    data.insert(data.end(), p, p + d);
    ids.push_back(row);
  });
  if (ids.empty()) fail(Where{dir}, "the index has no vectors (ingest with --embed DIR for dense / hybrid search)");
  const int64_t n = static_cast<int64_t>(ids.size());
  std::unique_ptr<faiss::Index> inner;
  if (n > kHnswThreshold) {
    auto h = std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(dim), 32, faiss::METRIC_INNER_PRODUCT);
    h->hnsw.efSearch = 128;
    h->hnsw.efConstruction = 80;
    inner = std::move(h);
    v->hnsw_ = true;
  } else {
    inner = std::make_unique<faiss::IndexFlatIP>(dim);
  }
  auto map = std::make_unique<faiss::IndexIDMap2>(inner.release());
  map->own_fields = true;
  map->add_with_ids(n, data.data(), ids.data());
  v->dim_ = dim;
  v->impl_->index = std::move(map);
  if (write) {
    faiss::VectorIOWriter w;
    faiss::write_index(v->impl_->index.get(), &w);
    core::write_file_atomic(faiss_path, std::string_view(reinterpret_cast<const char*>(w.data.data()), w.data.size()));
    nlohmann::json info{{"checksum", fnv_hex(w.data.data(), w.data.size())}, {"generation", generation},
                        {"count", n}, {"dim", dim}, {"kind", v->hnsw_ ? "hnsw" : "flat"}};
    core::write_file_atomic(json_path, info.dump(1) + "\n");
  }
  return v;
}

std::vector<ScoredRow> VectorIndex::search(const std::vector<float>& query, int64_t k) const {
  std::vector<ScoredRow> out;
  if (k <= 0 || static_cast<int64_t>(query.size()) != dim_) return out;
  k = std::min<int64_t>(k, impl_->index->ntotal);
  std::vector<float> dist(static_cast<size_t>(k));
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(k));
  impl_->index->search(1, query.data(), k, dist.data(), labels.data());
  for (int64_t i = 0; i < k; ++i)
    if (labels[static_cast<size_t>(i)] >= 0) out.push_back(ScoredRow{labels[static_cast<size_t>(i)], dist[static_cast<size_t>(i)]});
  return out;
}

int64_t VectorIndex::size() const { return impl_->index->ntotal; }

std::vector<ScoredRow> exact_filtered_search(const Store& store, const std::vector<float>& query, int64_t k,
                                             const Filter& filter) {
  std::vector<ScoredRow> all;
  std::vector<int64_t> rows;
  store.for_each_vector([&](int64_t row, const float* p, int64_t d) {
    if (d != static_cast<int64_t>(query.size())) return;
    double s = 0;
    for (int64_t i = 0; i < d; ++i) s += static_cast<double>(p[i]) * query[static_cast<size_t>(i)];
    all.push_back(ScoredRow{row, s});
  });
  std::sort(all.begin(), all.end(), [](const ScoredRow& a, const ScoredRow& b) { return a.score > b.score || (a.score == b.score && a.row < b.row); });
  std::vector<ScoredRow> out;
  for (const auto& r : all) {
    if (static_cast<int64_t>(out.size()) >= k) break;
    const auto c = store.chunks({r.row});
    if (!c.empty() && filter.matches(c[0].meta)) out.push_back(r);
  }
  return out;
}

}  // namespace loom::rag
