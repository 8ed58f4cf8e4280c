#include "loom/rag/store.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>

#include <sqlite3.h>

#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::rag {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "loom-rag/1";

bool meta_less(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() < b.get<double>();
  if (a.is_string() && b.is_string()) return a.get<std::string>() < b.get<std::string>();
  return false;
}

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql, const std::string& file) : file_(file) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr) != SQLITE_OK)
      fail(Where{file}, "SQLite: {} (in: {})", sqlite3_errmsg(db), sql);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind_blob(int i, const void* p, size_t n) {
    sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT);
    return *this;
  }
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(Where{file_}, "SQLite: {}", sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  std::string str(int c) const {
    const auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
  }
  const void* blob(int c) const { return sqlite3_column_blob(s_, c); }
  int bytes(int c) const { return sqlite3_column_bytes(s_, c); }

 private:
  sqlite3_stmt* s_ = nullptr;
  std::string file_;
};

class SqliteStore : public Store {
 public:
  SqliteStore(const std::string& dir, bool create) : path_((fs::path(dir) / "store.sqlite").string()) {
    const bool exists = core::file_exists(path_);
    if (!exists && !create) fail(Where{path_}, "no rag index here (run `loom rag ingest --index {}` first)", dir);
    if (create) fs::create_directories(dir);
    const int flags = create ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      fail(Where{path_}, "cannot open the SQLite store: {}", msg);
    }
    sqlite3_busy_timeout(db_, 10000);
    try {
      // Reading the schema is the first access: a file that is not SQLite fails here.
      const bool has_settings = table_exists("settings");
      if (exists && !has_settings) fail(Where{path_}, "a SQLite database but not a loom rag index (no settings table)");
      if (has_settings) {
        const std::string f = setting("format");
        if (f != kFormat) fail(Where{path_}, "not a loom rag index of format {} (format setting: \"{}\")", kFormat, f);
      }
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=FULL");
      if (!has_settings) {
        exec("BEGIN");
        exec("CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        exec("CREATE TABLE files(file TEXT PRIMARY KEY, hash TEXT NOT NULL)");
        exec("CREATE TABLE documents(source TEXT PRIMARY KEY, file TEXT NOT NULL, title TEXT, meta TEXT)");
        exec("CREATE TABLE chunks(row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, source TEXT NOT NULL, "
             "file TEXT NOT NULL, seq INTEGER, text TEXT NOT NULL, begin_byte INTEGER, end_byte INTEGER, "
             "heading TEXT, n_tokens INTEGER, vec BLOB)");
        exec("CREATE INDEX chunks_file ON chunks(file)");
        exec("CREATE VIRTUAL TABLE terms USING fts5(body, tokenize = 'unicode61 remove_diacritics 0')");
        exec("INSERT INTO settings VALUES('format', '" + std::string(kFormat) + "')");
        exec("INSERT INTO settings VALUES('generation', '0')");
        exec("COMMIT");
      }
      Stmt check(db_, "PRAGMA quick_check(1)", path_);
      if (check.step() && check.str(0) != "ok") fail(Where{path_}, "corrupt SQLite store: {}", check.str(0));
    } catch (...) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw;
    }
  }
  ~SqliteStore() override {
    if (db_) sqlite3_close(db_);
  }

  std::string setting(const std::string& key) const override {
    Stmt s(db_, "SELECT value FROM settings WHERE key = ?", path_);
    s.bind(1, key);
    return s.step() ? s.str(0) : std::string();
  }
  void set_setting(const std::string& key, const std::string& value) override {
    Stmt s(db_, "INSERT OR REPLACE INTO settings VALUES(?, ?)", path_);
    s.bind(1, key).bind(2, value);
    s.step();
  }
  std::optional<std::string> file_hash(const std::string& file) const override {
    Stmt s(db_, "SELECT hash FROM files WHERE file = ?", path_);
    s.bind(1, file);
    if (s.step()) return s.str(0);
    return std::nullopt;
  }

  void replace_file(const std::string& file, const std::string& hash, const std::vector<DocRecord>& docs,
                    const std::vector<ChunkRecord>& chunks, const std::vector<std::vector<float>>& vectors) override {
    exec("BEGIN IMMEDIATE");
    try {
      delete_file_rows(file);
      Stmt f(db_, "INSERT INTO files VALUES(?, ?)", path_);
      f.bind(1, file).bind(2, hash);
      f.step();
      Stmt d(db_, "INSERT INTO documents VALUES(?, ?, ?, ?)", path_);
      for (const auto& doc : docs) {
        d.bind(1, doc.source).bind(2, file).bind(3, doc.title).bind(4, doc.meta.dump());
        d.step();
        d.reset();
      }
      Stmt c(db_, "INSERT INTO chunks(id, source, file, seq, text, begin_byte, end_byte, heading, n_tokens, vec) "
                  "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", path_);
      Stmt t(db_, "INSERT INTO terms(rowid, body) VALUES(?, ?)", path_);
      for (size_t i = 0; i < chunks.size(); ++i) {
        const auto& ch = chunks[i];
        c.bind(1, ch.id).bind(2, ch.source).bind(3, file).bind(4, ch.seq).bind(5, ch.text).bind(6, ch.begin)
            .bind(7, ch.end).bind(8, ch.heading_path).bind(9, ch.n_tokens);
        if (!vectors.empty()) c.bind_blob(10, vectors[i].data(), vectors[i].size() * sizeof(float));
        c.step();
        c.reset();
        const int64_t row = sqlite3_last_insert_rowid(db_);
        t.bind(1, row).bind(2, ch.terms);
        t.step();
        t.reset();
      }
      bump_generation();
      exec("COMMIT");
    } catch (...) {
      exec("ROLLBACK", true);
      throw;
    }
  }

  void remove_file(const std::string& file) override {
    exec("BEGIN IMMEDIATE");
    try {
      delete_file_rows(file);
      bump_generation();
      exec("COMMIT");
    } catch (...) {
      exec("ROLLBACK", true);
      throw;
    }
  }

  std::vector<std::string> files() const override {
    Stmt s(db_, "SELECT file FROM files ORDER BY file", path_);
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.str(0));
    return out;
  }

  std::vector<ScoredRow> bm25(const std::vector<std::string>& terms, int64_t k, const Filter& filter) const override {
    std::vector<ScoredRow> out;
    if (terms.empty() || k <= 0) return out;
    std::string match;
    std::vector<std::string> seen;
    for (const auto& t : terms) {
      if (std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
      seen.push_back(t);
      std::string q = "\"";
      for (char ch : t) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      q += "\"";
      match += (match.empty() ? "" : " OR ") + q;
    }
    // Without a filter SQLite ranks and cuts; with one, rows are checked in rank order.
    const std::string sql = filter.empty()
        ? "SELECT rowid, bm25(terms) FROM terms WHERE terms MATCH ? ORDER BY bm25(terms) LIMIT ?"
        : "SELECT terms.rowid, bm25(terms), d.meta FROM terms JOIN chunks c ON c.row = terms.rowid "
          "JOIN documents d ON d.source = c.source WHERE terms MATCH ? ORDER BY bm25(terms)";
    Stmt s(db_, sql, path_);
    s.bind(1, match);
    if (filter.empty()) s.bind(2, k);
    while (s.step()) {
      if (!filter.empty() && !filter.matches(nlohmann::json::parse(s.str(2), nullptr, false))) continue;
      out.push_back(ScoredRow{s.i64(0), -s.f64(1)});
      if (static_cast<int64_t>(out.size()) >= k) break;
    }
    return out;
  }

  std::vector<ChunkRecord> chunks(const std::vector<int64_t>& rows) const override {
    Stmt s(db_, "SELECT c.row, c.id, c.source, d.title, c.seq, c.text, c.begin_byte, c.end_byte, c.heading, "
                "c.n_tokens, d.meta FROM chunks c JOIN documents d ON d.source = c.source WHERE c.row = ?", path_);
    std::vector<ChunkRecord> out;
    for (int64_t r : rows) {
      s.bind(1, r);
      if (s.step()) {
        ChunkRecord c;
        c.row = s.i64(0);
        c.id = s.str(1);
        c.source = s.str(2);
        c.title = s.str(3);
        c.seq = s.i64(4);
        c.text = s.str(5);
        c.begin = s.i64(6);
        c.end = s.i64(7);
        c.heading_path = s.str(8);
        c.n_tokens = s.i64(9);
        c.meta = nlohmann::json::parse(s.str(10), nullptr, false);
        if (c.meta.is_discarded()) c.meta = nlohmann::json::object();
        out.push_back(std::move(c));
      }
      s.reset();
    }
    return out;
  }

  void for_each_vector(const std::function<void(int64_t, const float*, int64_t)>& f) const override {
    Stmt s(db_, "SELECT row, vec FROM chunks WHERE vec IS NOT NULL ORDER BY row", path_);
    std::vector<float> buf;
    while (s.step()) {
      const int n = s.bytes(1);
      buf.resize(static_cast<size_t>(n) / sizeof(float));
      std::memcpy(buf.data(), s.blob(1), buf.size() * sizeof(float));
      f(s.i64(0), buf.data(), static_cast<int64_t>(buf.size()));
    }
  }

  nlohmann::json stats() const override {
    nlohmann::json j;
    Stmt a(db_, "SELECT count(*), coalesce(sum(n_tokens), 0), count(vec) FROM chunks", path_);
    a.step();
    j["chunks"] = a.i64(0);
    j["tokens"] = a.i64(1);
    j["vectors"] = a.i64(2);
    Stmt b(db_, "SELECT count(*) FROM documents", path_);
    b.step();
    j["documents"] = b.i64(0);
    Stmt c(db_, "SELECT count(*) FROM files", path_);
    c.step();
    j["files"] = c.i64(0);
    return j;
  }

  int64_t generation() const override {
    const std::string g = setting("generation");
    return g.empty() ? 0 : std::stoll(g);
  }

 private:
  bool table_exists(const std::string& name) const {
    Stmt s(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", path_);
    s.bind(1, name);
    return s.step();
  }
  void exec(const std::string& sql, bool quiet_errors = false) const {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      if (!quiet_errors) fail(Where{path_}, "SQLite: {} (in: {})", msg, sql);
    }
  }
  void delete_file_rows(const std::string& file) {
    Stmt t(db_, "DELETE FROM terms WHERE rowid IN (SELECT row FROM chunks WHERE file = ?)", path_);
    t.bind(1, file);
    t.step();
    for (const char* sql : {"DELETE FROM chunks WHERE file = ?", "DELETE FROM documents WHERE file = ?",
                            "DELETE FROM files WHERE file = ?"}) {
      Stmt s(db_, sql, path_);
      s.bind(1, file);
      s.step();
    }
  }
  void bump_generation() { exec("UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"); }

  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& dir, bool create) {
  return std::make_unique<SqliteStore>(dir, create);
}

Filter Filter::parse(const std::string& text) {
  Filter f;
  const Where where{"", 0, "--where"};
  size_t pos = 0;
  auto skip_ws = [&] { while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos; };
  while (true) {
    skip_ws();
    if (pos >= text.size()) break;
    if (text.compare(pos, 5, "meta.") != 0) fail(where, "expected meta.KEY at \"{}\"", text.substr(pos));
    pos += 5;
    const size_t kb = pos;
    while (pos < text.size() && (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_' || text[pos] == '-')) ++pos;
    Clause c;
    c.key = text.substr(kb, pos - kb);
    if (c.key.empty()) fail(where, "empty key after meta.");
    skip_ws();
    for (const char* op : {"!=", "<=", ">=", "=", "<", ">"}) {
      if (text.compare(pos, std::strlen(op), op) == 0) {
        c.op = op;
        pos += std::strlen(op);
        break;
      }
    }
    if (c.op.empty()) fail(where, "expected one of = != < <= > >= after meta.{}", c.key);
    skip_ws();
    // The value: a JSON string or number, up to the next AND.
    size_t ve = pos;
    if (pos < text.size() && text[pos] == '"') {
      ve = pos + 1;
      while (ve < text.size() && text[ve] != '"') ve += text[ve] == '\\' ? 2 : 1;
      ve = std::min(ve + 1, text.size());
    } else {
      while (ve < text.size() && !std::isspace(static_cast<unsigned char>(text[ve]))) ++ve;
    }
    c.value = nlohmann::json::parse(text.substr(pos, ve - pos), nullptr, false);
    if (c.value.is_discarded() || !(c.value.is_string() || c.value.is_number() || c.value.is_boolean()))
      fail(where, "value of meta.{} must be a JSON string (in double quotes), number or boolean, got {}", c.key,
           text.substr(pos, ve - pos));
    pos = ve;
    f.clauses.push_back(std::move(c));
    skip_ws();
    if (pos >= text.size()) break;
    if (text.compare(pos, 3, "AND") != 0 && text.compare(pos, 3, "and") != 0)
      fail(where, "expected AND at \"{}\"", text.substr(pos));
    pos += 3;
  }
  if (f.clauses.empty()) fail(where, "empty filter");
  return f;
}

bool Filter::matches(const nlohmann::json& meta) const {
  for (const auto& c : clauses) {
    if (!meta.is_object() || !meta.contains(c.key)) return false;
    const auto& v = meta[c.key];
    bool ok = false;
    if (c.op == "=") ok = v == c.value || (v.is_number() && c.value.is_number() && v.get<double>() == c.value.get<double>());
    else if (c.op == "!=") ok = !(v == c.value);
    else if (c.op == "<") ok = meta_less(v, c.value);
    else if (c.op == ">") ok = meta_less(c.value, v);
    else if (c.op == "<=") ok = meta_less(v, c.value) || v == c.value;
    else if (c.op == ">=") ok = meta_less(c.value, v) || v == c.value;
    if (!ok) return false;
  }
  return true;
}

}  // namespace loom::rag
