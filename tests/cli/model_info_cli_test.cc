// `loom model-info`: prints the DeLighT blocks and parameter totals of a shipped config; a bad
// config is one "loom: error:" line naming the file and field, exit code 1.
#include <sys/wait.h>
#include "support/paths.h"
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

struct Result {
  int rc = -1;
  std::string out, err;
};

Result run_model_info(const std::string& arg) {
  const std::string err_path = (fs::temp_directory_path() / ("loom_model_info_err_" + std::to_string(::getpid()))).string();
  const std::string cmd = std::string("'") + LOOM_BINARY + "' model-info '" + arg + "' 2>'" + err_path + "'";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, k);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_path);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  fs::remove(err_path);
  return r;
}

TEST(ModelInfoCli, PrintsBlocksAndTotals) {
  Result r = run_model_info(std::string(LOOM_SOURCE_DIR) + "/configs/delight/wmt14-en-de-dm512.json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("encoder block 0: N^b 4 w_m^b 2.000 | dense 512->256 | GLT in [256, 512, 1280, 1280] out "
                       "[256, 1024, 1024, 256] groups [2, 4, 4, 2]"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("decoder block 7: N^b 8 w_m^b 3.000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(36.76 M)"), std::string::npos) << r.out;
}

TEST(ModelInfoCli, BadConfigIsOneErrorLine) {
  const fs::path bad = fs::temp_directory_path() / ("loom_model_info_bad_" + std::to_string(::getpid()) + ".json");
  std::ofstream(bad) << R"({"model_type": "loom_seq2seq", "architecture": "delight", "vocab_size": 100, "d_model": 100})";
  Result r = run_model_info(bad.string());
  fs::remove(bad);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err.rfind("loom: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(bad.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("d_model"), std::string::npos) << r.err;
}

}  // namespace
