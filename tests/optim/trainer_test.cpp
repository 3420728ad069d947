// The shared training loop: schedules against their closed forms, one step of SGD with gradient
// clipping against the update computed by hand, learning-rate groups, and the divergence error.
#include <cmath>

#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/trainer.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

using namespace clprompt;

TEST_CASE("schedules follow their definitions", "[optim][schedule]") {
  const double pi = std::acos(-1.0);
  ScheduleOptions cosine{.schedule = ScheduleKind::cosine};
  ScheduleOptions quarter{.schedule = ScheduleKind::quarter_cosine};
  ScheduleOptions steps{.schedule = ScheduleKind::multistep, .milestones = {3, 5}, .gamma = 0.5};
  for (int64_t e = 0; e < 8; ++e) {
    CHECK(cosine.factor(e, 8) == Approx(0.5 * (1 + std::cos(pi * e / 8.0))).epsilon(1e-15));
    CHECK(quarter.factor(e, 8) == Approx(std::cos(99 * pi * e / (200.0 * 7))).epsilon(1e-15));
    CHECK(steps.factor(e, 8) == (e < 3 ? 1.0 : e < 5 ? 0.5 : 0.25));
  }
  CHECK(quarter.factor(7, 8) == Approx(0.015707317311820675));  // cos(0.495 π): almost zero at the end
  // The CODA-Prompt repository's schedule for K = 20, epoch by epoch as its learner steps it:
  // CosineSchedule.get_lr() = base · cos(99π · last_epoch / (200 · (K − 1))) with last_epoch = 0
  // for epochs 0 and 1 (the first step() happens at the start of epoch 1), then e − 1.
  ScheduleOptions coda{.schedule = ScheduleKind::coda_cosine};
  for (int64_t e = 0, last_epoch = 0; e < 20; ++e) {
    if (e > 0) last_epoch = e - 1;  // scheduler.step() at the start of every epoch but the first
    CHECK(coda.factor(e, 20) == Approx(std::cos(99 * pi * last_epoch / (200.0 * 19))).epsilon(1e-15));
  }
  CHECK(coda.factor(0, 20) == 1.0);
  CHECK(coda.factor(1, 20) == 1.0);
  CHECK(coda.factor(19, 20) == Approx(0.09740).epsilon(1e-3));
  CHECK(quarter.factor(0, 1) == 1.0);
  CHECK(ScheduleOptions{}.factor(5, 8) == 1.0);
}

TEST_CASE("a step clips the total gradient norm before the optimiser steps", "[optim][trainer]") {
  // loss = 0.5 |a ⊙ w|² over two groups: gradient a² ⊙ w; with clipping the SGD update is
  // lr · g · min(1, c / |g|) with |g| taken over both groups together.
  auto w1 = at::tensor({1.0, 2.0}, at::kDouble).set_requires_grad(true);
  auto w2 = at::tensor({3.0}, at::kDouble).set_requires_grad(true);
  const auto before1 = w1.detach().clone(), before2 = w2.detach().clone();
  OptimizerOptions o;
  o.optimizer = OptimizerKind::sgd;
  o.lr = 0.1;
  o.momentum = 0.0;
  o.clip_grad_norm = 1.0;
  Trainer trainer("test", {{{w1}, 1.0}, {{w2}, 0.5}}, o);
  trainer.begin_epoch(0, 1, "epoch 0");
  const double loss = trainer.step(0.5 * ((2.0 * w1).pow(2).sum() + (2.0 * w2).pow(2).sum()));
  CHECK(loss == Approx(0.5 * 4 * (1 + 4 + 9)));
  const auto g1 = 4.0 * before1, g2 = 4.0 * before2;
  const double norm = std::sqrt(g1.pow(2).sum().item<double>() + g2.pow(2).sum().item<double>());
  const double clip = 1.0 / (norm + 1e-6);  // torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6)
  CHECK(at::allclose(w1.detach(), before1 - 0.1 * clip * g1, 1e-12, 1e-12));
  CHECK(at::allclose(w2.detach(), before2 - 0.05 * clip * g2, 1e-12, 1e-12));  // the second group at lr × 0.5
  CHECK(trainer.lr() == Approx(0.05));
  CHECK(trainer.epoch_loss() == Approx(loss));

  SECTION("without clipping the plain SGD update") {
    auto w = at::tensor({1.0, 2.0}, at::kDouble).set_requires_grad(true);
    o.clip_grad_norm = 0;
    Trainer plain("test", {{{w}}}, o);
    plain.step(0.5 * (2.0 * w).pow(2).sum());
    CHECK(at::allclose(w.detach(), at::tensor({1.0 - 0.1 * 4, 2.0 - 0.1 * 8}, at::kDouble)));
  }
}

TEST_CASE("the schedule sets every group's learning rate per epoch", "[optim][trainer]") {
  auto w = at::zeros({2}).set_requires_grad(true), v = at::zeros({2}).set_requires_grad(true);
  OptimizerOptions o;
  o.lr = 0.2;
  Trainer trainer("test", {{{w}, 0.01}, {{v}, 1.0}}, o, {.schedule = ScheduleKind::cosine});
  trainer.begin_epoch(2, 4, "epoch 2");
  const auto& groups = trainer.optimizer().param_groups();
  CHECK(groups.at(0).options().get_lr() == Approx(0.2 * 0.01 * 0.5));
  CHECK(groups.at(1).options().get_lr() == Approx(0.2 * 0.5));
  SECTION("empty groups are skipped and a model without parameters only checks the loss") {
    Trainer frozen("frozen", {{{}, 1.0}}, o);
    CHECK_FALSE(frozen.has_parameters());
    CHECK(frozen.step(at::tensor(2.5)) == 2.5);
  }
}

TEST_CASE("a non-finite loss is an error naming the loop, the position and the learning rate", "[optim][trainer]") {
  auto w = at::ones({1}).set_requires_grad(true);
  OptimizerOptions o;
  o.lr = 0.5;
  Trainer trainer("classifier alignment", {{{w}}}, o, {}, "lower the lr");
  trainer.begin_epoch(3, 5, "task 1, epoch 3");
  trainer.step((w * 2).sum());
  const auto message = test::error_message<NumericError>([&] { trainer.step((w * NAN).sum()); });
  CHECK_THAT(message, Catch::Contains("classifier alignment diverged") && Catch::Contains("task 1, epoch 3, batch 1") &&
                          Catch::Contains("lr 0.5") && Catch::Contains("lower the lr"));
}

TEST_CASE("a hand-written update gets the learning rate once the gradients are in", "[optim][trainer]") {
  auto w = at::tensor({1.0, -1.0}, at::kDouble).set_requires_grad(true);
  std::vector<double> lrs;
  Trainer trainer("pretrain", {w}, 0.3, [&](double lr) {
    lrs.push_back(lr);
    at::NoGradGuard no_grad;
    w.sub_(lr * w.grad());
  }, /*clip_grad_norm=*/0.0);
  trainer.set_lr(0.25);
  trainer.set_position("step 0");
  trainer.step((w * w).sum());
  trainer.step((w * w).sum());  // gradients do not accumulate across steps
  REQUIRE(lrs == std::vector<double>{0.25, 0.25});
  CHECK(at::allclose(w.detach(), at::tensor({0.25, -0.25}, at::kDouble)));
  CHECK_THAT(test::error_message<NumericError>([&] { trainer.step(w.sum() * INFINITY); }),
             Catch::Contains("pretrain diverged") && Catch::Contains("at step 0 (lr 0.25)"));
}
