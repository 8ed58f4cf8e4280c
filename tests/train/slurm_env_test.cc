// Slurm conventions of train/distributed: node-list expansion (as `scontrol show hostnames`)
// and MASTER_ADDR / MASTER_PORT / ranks derived from SLURM_* when torchrun's variables are unset.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/train/distributed.h"

namespace loom::train {
namespace {

using V = std::vector<std::string>;

TEST(SlurmNodelist, ExpandsRangesListsAndProducts) {
  EXPECT_EQ(expand_slurm_nodelist("gpu5"), V({"gpu5"}));
  EXPECT_EQ(expand_slurm_nodelist("node[01-03,07],gpu5"), V({"node01", "node02", "node03", "node07", "gpu5"}));
  EXPECT_EQ(expand_slurm_nodelist("r[1-2]n[8-9]"), V({"r1n8", "r1n9", "r2n8", "r2n9"}));
  EXPECT_EQ(expand_slurm_nodelist("a[9-11]-ib"), V({"a9-ib", "a10-ib", "a11-ib"}));
  EXPECT_EQ(expand_slurm_nodelist("cn[098-100]").size(), 3u);
  EXPECT_EQ(expand_slurm_nodelist("cn[098-100]")[0], "cn098");
}

TEST(SlurmNodelist, BadListsNameTheVariable) {
  for (const char* bad : {"node[1-3", "node1-3]", "node[3-1]", "node[a-b]", "a,,b", "n[1-2[3]]", "n[0-9999999]"}) {
    SCOPED_TRACE(bad);
    try {
      expand_slurm_nodelist(bad);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("SLURM_JOB_NODELIST"), std::string::npos) << e.what();
    }
  }
}

struct EnvGuard {
  std::vector<std::string> names;
  explicit EnvGuard(std::vector<std::string> n) : names(std::move(n)) {
    for (const auto& x : names) ::unsetenv(x.c_str());
  }
  ~EnvGuard() {
    for (const auto& x : names) ::unsetenv(x.c_str());
  }
};

TEST(SlurmEnv, MasterAndRanksComeFromSlurmWhenTorchrunVariablesAreUnset) {
  EnvGuard g({"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
              "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID"});
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_JOB_NODELIST", "node[07-08],login1", 1);
  ::setenv("SLURM_JOB_ID", "123456", 1);
  DistributedEnv e = distributed_env_from_environment();
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.master_addr, "node07");
  EXPECT_EQ(e.master_port, 20000 + 123456 % 20000);
  // Explicit torchrun-style variables win.
  ::setenv("MASTER_ADDR", "10.0.0.1", 1);
  ::setenv("MASTER_PORT", "29555", 1);
  e = distributed_env_from_environment();
  EXPECT_EQ(e.master_addr, "10.0.0.1");
  EXPECT_EQ(e.master_port, 29555);
  // One task: no rendezvous, loopback as before.
  ::unsetenv("MASTER_ADDR");
  ::setenv("SLURM_NTASKS", "1", 1);
  ::setenv("SLURM_PROCID", "0", 1);
  e = distributed_env_from_environment();
  EXPECT_EQ(e.master_addr, "127.0.0.1");
}

}  // namespace
}  // namespace loom::train
