// The verdict of limits a shared store decides: the reply read per limit, or
// each limit's on_store_error when the store failed.

#include "proxy/admission/store_verdict.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "proxy/limiter/limit.h"
#include "tests/admission/admission_test_util.h"

namespace sluice::admission {
namespace {

class StoreVerdictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = test_util::loadLimits(
        "  local: {per: ip, rate: 1/s, store: redis, on_store_error: local}\n"
        "  allow: {per: ip, rate: 1/s, store: redis, on_store_error: allow}\n"
        "  deny: {per: ip, rate: 1/s, store: redis, on_store_error: deny}\n",
        "local, allow, deny", "redis: {address: 127.0.0.1:6379}\n");
    ASSERT_TRUE(cfg_);
    for (const auto& lc : cfg_->limits) {
      limits_.push_back(limiter::Limit::create(lc, 1000));
      limiter::Probe p(limits_.back().get());
      p.burst = 5;
      p.window_seconds = 5;
      p.interval = 1000 * 1000 * 1000;
      probes_.push_back(p);
    }
  }

  static store::KeyReply key(bool admitted, std::int64_t remaining, std::int64_t wait_us) {
    return {admitted, remaining, wait_us, wait_us * 2};
  }

  std::shared_ptr<const config::Config> cfg_;
  std::vector<std::shared_ptr<limiter::Limit>> limits_;
  std::vector<limiter::Probe> probes_;
};

TEST_F(StoreVerdictTest, AllowedReplyAllowsEveryLimitWithTheStoresNumbers) {
  store::Reply reply{store::Result::kOk, true, {key(true, 4, 0), key(true, 2, 0), key(true, 0, 0)}};
  const RemoteVerdict v = readStoreReply(probes_, reply);
  EXPECT_FALSE(v.store_failed);
  EXPECT_EQ(v.outcomes, std::vector<RemoteOutcome>(3, RemoteOutcome::kAllowed));
  ASSERT_EQ(v.views.size(), 3u);
  EXPECT_EQ(v.views[1].name, "allow");
  EXPECT_EQ(v.views[1].remaining, 2);
  EXPECT_EQ(v.views[1].burst, 5);
  EXPECT_EQ(v.headline, -1);
}

TEST_F(StoreVerdictTest, DeniedReplyHeadlinesTheLongestWait) {
  store::Reply reply{store::Result::kOk,
                     false,
                     {key(false, 0, 1'500'000), key(true, 3, 0), key(false, 0, 4'200'000)}};
  const RemoteVerdict v = readStoreReply(probes_, reply);
  EXPECT_EQ(v.outcomes, (std::vector<RemoteOutcome>{RemoteOutcome::kDenied, RemoteOutcome::kAllowed,
                                                    RemoteOutcome::kDenied}));
  EXPECT_EQ(v.headline, 2);
  EXPECT_EQ(v.retry_after, 5);  // 4.2s rounded up
  EXPECT_EQ(v.views[2].wait, 4'200'000'000);
  EXPECT_EQ(v.views[2].full_in, 8'400'000'000);
}

TEST_F(StoreVerdictTest, KeysTheStoreAdmittedAreAllowedWhenAnotherDenies) {
  store::Reply reply{
      store::Result::kOk, false, {key(true, 1, 0), key(true, 1, 0), key(false, 0, 1)}};
  const RemoteVerdict v = readStoreReply(probes_, reply);
  EXPECT_EQ(v.outcomes[0], RemoteOutcome::kAllowed);
  EXPECT_EQ(v.outcomes[2], RemoteOutcome::kDenied);
  EXPECT_EQ(v.retry_after, 1) << "a wait under a second is still a whole second";
}

TEST_F(StoreVerdictTest, FailedStoreLeavesEachLimitToItsPolicy) {
  for (store::Result r : {store::Result::kError, store::Result::kTimeout}) {
    const RemoteVerdict v = readStoreReply(probes_, store::Reply{r, false, {}});
    EXPECT_TRUE(v.store_failed);
    EXPECT_EQ(v.outcomes,
              (std::vector<RemoteOutcome>{RemoteOutcome::kDecideLocally, RemoteOutcome::kAllowed,
                                          RemoteOutcome::kDenied}));
    EXPECT_TRUE(v.views.empty());
    EXPECT_EQ(v.headline, -1);
  }
}

TEST_F(StoreVerdictTest, ReplyOfTheWrongShapeIsAFailure) {
  store::Reply reply{store::Result::kOk, true, {key(true, 1, 0)}};
  const RemoteVerdict v = readStoreReply(probes_, reply);
  EXPECT_TRUE(v.store_failed);
  EXPECT_EQ(v.outcomes[2], RemoteOutcome::kDenied);
}

TEST(StoreFallback, EachPolicyMapsToItsOutcome) {
  EXPECT_EQ(fallbackOutcome(config::StoreErrorPolicy::kLocal), RemoteOutcome::kDecideLocally);
  EXPECT_EQ(fallbackOutcome(config::StoreErrorPolicy::kAllow), RemoteOutcome::kAllowed);
  EXPECT_EQ(fallbackOutcome(config::StoreErrorPolicy::kDeny), RemoteOutcome::kDenied);
}

}  // namespace
}  // namespace sluice::admission
