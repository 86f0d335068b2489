#include "actors/server/storage.hpp"
#include "actors/common/tsan.hpp"

#include "actors/server/context.hpp"
#include "codec/codec.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace parley::srv {

namespace {

struct storage_state {
  std::shared_ptr<context> ctx;
  std::vector<store::write_op> ops;
  std::vector<caf::typed_response_promise<append_reply>> promises;
  std::vector<size_t> promise_index; ///< ops index of each promise.
  bool flush_scheduled = false;
  std::vector<store::write_outcome> outcomes;
  std::vector<uint64_t> touched;
  std::vector<uint64_t> heads; ///< Of touched, after the batch.
  std::vector<store::appended_record> appended;
  std::vector<record_batch> records; ///< Of touched: what the batch appended.
  uint64_t batches = 0;
  uint64_t batched_ops = 0;
  static inline const char* name = "parley.storage";
};

using storage_ptr =
  caf::stateful_actor<storage_state, net::hb_actor<storage_actor::base>>*;

/// Largest group-commit batch: beyond it the batch commits at once.
constexpr size_t max_batch = 4096;

void flush(storage_ptr self);

void schedule_flush(storage_ptr self) {
  if (self->state.ops.size() >= max_batch) {
    flush(self);
    return;
  }
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    self->send(self, tick_atom::value);
  }
}

/// Applies the queued ops in one transaction, filling outcomes and touched.
status apply_queued(storage_ptr self) {
  auto& st = self->state;
  st.outcomes.clear();
  st.touched.clear();
  st.heads.clear();
  st.records.clear();
  status res;
  try {
    res = st.ctx->store->apply(st.ops, st.outcomes, st.touched, &st.heads,
                               &st.appended);
  } catch (const std::exception& e) {
    // A bug must not take the only writer down with it.
    res = status{status_code::internal,
                 std::string{"exception in the store: "} + e.what()};
    st.outcomes.assign(st.ops.size(), store::write_outcome{res, {}, {}, {}});
    st.touched.clear();
    st.heads.clear();
    st.appended.clear();
  }
  // What the batch appended, per touched user (touched is ascending; each
  // user's records come in seq order).
  if (!st.appended.empty()) {
    std::vector<std::vector<store::log_record>> per(st.touched.size());
    for (auto& a : st.appended) {
      auto it = std::lower_bound(st.touched.begin(), st.touched.end(), a.uid);
      if (it != st.touched.end() && *it == a.uid)
        per[static_cast<size_t>(it - st.touched.begin())].push_back(
          std::move(a.rec));
    }
    st.records.reserve(per.size());
    auto epoch = st.ctx->rewrites.load(std::memory_order_acquire);
    for (auto& v : per)
      st.records.push_back(v.empty() ? nullptr
                                     : std::make_shared<const appended_batch>(
                                         appended_batch{epoch, std::move(v)}));
    st.appended.clear();
  }
  if (!res)
    st.ctx->log->error("storage: batch of {} failed: {}", st.ops.size(),
                       res.to_string());
  ++st.batches;
  st.batched_ops += st.ops.size();
  return res;
}

/// The records the last batch appended to the log of `op`'s sender.
record_batch records_of(storage_state& st, const store::write_op& op) {
  auto* a = std::get_if<store::append_op>(&op);
  if (a == nullptr || st.records.empty())
    return nullptr;
  auto it =
    std::lower_bound(st.touched.begin(), st.touched.end(), a->sender_uid);
  if (it == st.touched.end() || *it != a->sender_uid)
    return nullptr;
  return st.records[static_cast<size_t>(it - st.touched.begin())];
}

void flush(storage_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.ops.empty())
    return;
  apply_queued(self);
  for (size_t i = 0; i < st.promises.size(); ++i) {
    auto& out = st.outcomes[st.promise_index[i]];
    append_reply rep;
    if (!out.st) {
      rep.status = static_cast<uint8_t>(codec::message_status::fail);
      rep.text = "the server could not store the message (" +
                 out.st.to_string() + "); send it again later";
    } else {
      rep.status = static_cast<uint8_t>(out.append.status);
      rep.text = out.append.text;
      rep.duplicate = out.append.duplicate;
      rep.sender_seq = out.append.sender_seq;
      rep.receiver_uid = out.append.receiver_uid;
      rep.receiver_seq = out.append.receiver_seq;
      rep.receivers = out.append.receivers;
      rep.ts_ms = out.append.ts_ms;
      rep.records = records_of(st, st.ops[st.promise_index[i]]);
    }
    st.promises[i].deliver(std::move(rep));
  }
  st.ops.clear();
  st.promises.clear();
  st.promise_index.clear();
  if (!st.touched.empty())
    self->send(st.ctx->dispatcher, log_atom::value, st.touched, st.heads,
               st.records);
}

template<class Frame>
bytes encoded(const Frame& f) {
  codec::buffer out;
  codec::encode(f, out);
  return out;
}

bytes reply_frame(uint64_t req, const status& st, std::string body = {}) {
  codec::reply r;
  r.req = req;
  r.code = st.code();
  r.text = st.message();
  r.body = std::move(body);
  return encoded(r);
}

bytes token_frame(uint64_t req, const store::issued_token& t) {
  codec::admin_token a;
  a.req = req;
  a.app_id = t.app_id;
  a.address = t.address;
  a.token = t.token;
  a.expires_at_ms = t.expires_ms;
  return encoded(a);
}

void kick(storage_ptr self, uint64_t uid, codec::goodbye_reason reason,
          std::string text) {
  self->send(self->state.ctx->dispatcher, kick_atom::value, uid,
             static_cast<uint8_t>(reason), std::move(text));
}

/// Executes one admin frame; returns the encoded answer frame.
/// A user's edit or retraction, as run_change.
store::change_op change_of(codec::frame& f, uint64_t uid, std::string address,
                           std::string device, uint64_t now, uint64_t& req) {
  store::change_op op;
  op.uid = uid;
  op.sender = std::move(address);
  op.device = std::move(device);
  op.now_ms = now;
  if (auto* e = std::get_if<codec::edit>(&f)) {
    req = e->req;
    op.kind = codec::update_kind::edit;
    op.mid = e->mid;
    op.payload = std::move(e->payload);
  } else if (auto* r = std::get_if<codec::retract>(&f)) {
    req = r->req;
    op.kind = codec::update_kind::retract;
    op.mid = r->mid;
  }
  return op;
}

/// A user's group change, edit or retraction: decoded, applied in a batch
/// of its own (after what is queued, so it is ordered after earlier
/// messages), answered once durable: group_info for a create, else reply.
bytes run_change(storage_ptr self, uint64_t uid, std::string app,
                 std::string address, std::string device, uint8_t type,
                 const bytes& body) {
  auto t = static_cast<codec::frame_type>(type);
  codec::frame f;
  if (auto e = codec::decode(t, body.data(), body.size(), f);
      e != codec::errc::ok)
    return reply_frame(0, codec::to_status(e, codec::to_string(t)));
  auto& st = self->state;
  if (t == codec::frame_type::edit || t == codec::frame_type::retract) {
    uint64_t req = 0;
    auto op = change_of(f, uid, std::move(address), std::move(device),
                        st.ctx->now(), req);
    flush(self);
    // Copies of records handed out so far may be rewritten now: sessions
    // stream those from the store instead (see record_batch).
    st.ctx->rewrites.fetch_add(1, std::memory_order_acq_rel);
    st.ops.emplace_back(std::move(op));
    auto res = apply_queued(self);
    st.ops.clear();
    if (!st.touched.empty())
      self->send(st.ctx->dispatcher, log_atom::value, st.touched, st.heads,
               st.records);
    if (!res || st.outcomes.empty() || !st.outcomes[0].st)
      return reply_frame(
        req,
        status{status_code::unavailable,
               "the server could not store the change (" +
                 (res ? st.outcomes[0].st.to_string() : res.to_string()) +
                 "): try again later"});
    return reply_frame(req, st.outcomes[0].refusal);
  }
  store::group_op op;
  op.kind = t;
  op.actor_uid = uid;
  op.app_id = std::move(app);
  op.actor = std::move(address);
  op.now_ms = self->state.ctx->now();
  uint64_t req = 0;
  std::visit(
    [&](auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, codec::group_create>) {
        req = x.req;
        op.name = std::move(x.name);
        op.flags = x.flags;
        op.members = std::move(x.members);
      } else if constexpr (std::is_same_v<T, codec::group_members>) {
        req = x.req;
        op.group_id = x.group_id;
        op.op = x.op;
        op.members = std::move(x.members);
      } else if constexpr (std::is_same_v<T, codec::group_leave> ||
                           std::is_same_v<T, codec::group_delete>) {
        req = x.req;
        op.group_id = x.group_id;
      } else if constexpr (std::is_same_v<T, codec::group_set>) {
        req = x.req;
        op.group_id = x.group_id;
        op.name = std::move(x.name);
        op.flags = x.flags;
      }
    },
    f);
  flush(self); // what is queued goes first
  st.ops.emplace_back(std::move(op));
  auto res = apply_queued(self);
  st.ops.clear();
  if (!st.touched.empty())
    self->send(st.ctx->dispatcher, log_atom::value, st.touched, st.heads,
               st.records);
  if (!res || st.outcomes.empty() || !st.outcomes[0].st)
    return reply_frame(
      req, status{status_code::unavailable,
                  "the server could not store the change (" +
                    (res ? st.outcomes[0].st.to_string() : res.to_string()) +
                    "): try again later"});
  auto& out = st.outcomes[0].group;
  if (!out.refusal)
    return reply_frame(req, out.refusal);
  if (t == codec::frame_type::group_create) {
    out.info.req = req;
    return encoded(out.info);
  }
  return reply_frame(req, status{});
}

bytes run_admin(storage_ptr self, uint8_t type, const bytes& body) {
  auto& store = *self->state.ctx->store;
  codec::frame f;
  auto t = static_cast<codec::frame_type>(type);
  if (auto e = codec::decode(t, body.data(), body.size(), f);
      e != codec::errc::ok)
    return reply_frame(0, codec::to_status(e, "admin frame"));
  auto now = self->state.ctx->now();
  return std::visit(
    [&](auto& x) -> bytes {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, codec::admin_app_add>) {
        return reply_frame(x.req, store.app_add(x.app_id, x.name));
      } else if constexpr (std::is_same_v<T, codec::admin_app_delete>) {
        auto res = store.app_delete(x.app_id);
        if (!res)
          return reply_frame(x.req, res.error());
        for (auto uid : *res)
          kick(self, uid, codec::goodbye_reason::deleted,
               "the app was deleted");
        return reply_frame(x.req, {});
      } else if constexpr (std::is_same_v<T, codec::admin_user_add>) {
        auto res =
          store.user_add(x.app_id, x.address, x.name, x.token_ttl_s, now);
        return res ? token_frame(x.req, *res) : reply_frame(x.req, res.error());
      } else if constexpr (std::is_same_v<T, codec::admin_users_add>) {
        auto res = store.users_add(x.app_id, x.addresses, x.token_ttl_s, now);
        if (!res)
          return reply_frame(x.req, res.error());
        codec::admin_tokens out;
        out.req = x.req;
        out.app_id = x.app_id;
        out.grants.reserve(res->size());
        for (auto& t : *res)
          out.grants.push_back({t.address, t.token, t.expires_ms});
        return encoded(out);
      } else if constexpr (std::is_same_v<T, codec::admin_token_add>) {
        auto res = store.token_add(x.app_id, x.address, x.token_ttl_s, now);
        return res ? token_frame(x.req, *res) : reply_frame(x.req, res.error());
      } else if constexpr (std::is_same_v<T, codec::admin_token_revoke>) {
        auto res = store.token_revoke(x.app_id, x.address, x.token);
        if (!res)
          return reply_frame(x.req, res.error());
        kick(self, *res, codec::goodbye_reason::auth_revoked,
             "the access token was revoked: ask your backend for a new one");
        return reply_frame(x.req, {});
      } else if constexpr (std::is_same_v<T, codec::admin_user_disable>) {
        auto res = store.user_set_disabled(x.app_id, x.address, x.disabled);
        if (!res)
          return reply_frame(x.req, res.error());
        if (x.disabled)
          kick(self, *res, codec::goodbye_reason::auth_revoked,
               "the user was disabled by the administrator");
        return reply_frame(x.req, {});
      } else if constexpr (std::is_same_v<T, codec::admin_user_delete>) {
        auto res = store.user_delete(x.app_id, x.address);
        if (!res)
          return reply_frame(x.req, res.error());
        kick(self, *res, codec::goodbye_reason::deleted,
             "the user was deleted by the administrator");
        return reply_frame(x.req, {});
      } else if constexpr (std::is_same_v<T, codec::admin_list>) {
        nlohmann::json out = nlohmann::json::array();
        auto limit = x.limit == 0 ? 1000u : std::min(x.limit, 10000u);
        if (x.what == codec::admin_list_kind::apps) {
          auto res = store.apps_list(x.after, limit);
          if (!res)
            return reply_frame(x.req, res.error());
          for (auto& a : *res)
            out.push_back({{"app_id", a.app_id}, {"name", a.name}});
        } else if (x.what == codec::admin_list_kind::users) {
          auto res = store.users_list(x.app_id, x.after, limit);
          if (!res)
            return reply_frame(x.req, res.error());
          for (auto& u : *res)
            out.push_back({{"address", u.address},
                           {"name", u.name},
                           {"disabled", u.disabled},
                           {"log_head", u.head}});
        } else {
          return reply_frame(
            x.req, status{status_code::invalid_argument,
                          "this server lists apps and users; sessions and "
                          "groups come with a later version"});
        }
        return reply_frame(
          x.req, {},
          out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      } else {
        return reply_frame(0, status{status_code::invalid_argument,
                                     std::string{"'"} +
                                       std::string{codec::to_string(t)} +
                                       "' is not an admin frame"});
      }
    },
    f);
}

} // namespace

storage_actor make_storage_actor(caf::actor_system& sys,
                                 std::shared_ptr<context> ctx) {
  auto fn = [](storage_ptr self,
               std::shared_ptr<context> c) -> storage_actor::behavior_type {
    self->state.ctx = std::move(c);
    self->delayed_send(self, std::chrono::seconds(1), sweep_atom::value);
    return {
      [=](append_atom, append_request& req) -> caf::result<append_reply> {
        store::append_op op;
        op.sender_uid = req.sender_uid;
        op.app_id = std::move(req.app_id);
        op.sender = std::move(req.sender);
        op.device = std::move(req.device);
        op.now_ms = self->state.ctx->now();
        if (auto e = codec::decode_body(req.send_body.data(),
                                        req.send_body.size(), op.msg);
            e != codec::errc::ok) {
          append_reply rep;
          rep.status = static_cast<uint8_t>(codec::message_status::fail);
          rep.text = codec::to_status(e, "send frame").message();
          return rep;
        }
        auto& st = self->state;
        st.promise_index.push_back(st.ops.size());
        st.ops.emplace_back(std::move(op));
        auto rp = self->make_response_promise<append_reply>();
        st.promises.push_back(rp);
        schedule_flush(self); // may commit at once when the batch is full
        return rp;
      },
      [=](ack_atom, uint64_t uid, std::string& device, uint64_t seq) {
        store::ack_op op{uid, std::move(device), seq, self->state.ctx->now()};
        self->state.ops.emplace_back(std::move(op));
        schedule_flush(self);
      },
      [=](read_atom, uint64_t uid, std::string& peer, uint32_t group_id,
          uint64_t up_to) {
        store::read_op op{uid, std::move(peer), up_to, self->state.ctx->now(),
                          group_id};
        self->state.ops.emplace_back(std::move(op));
        schedule_flush(self);
      },
      [=](expire_atom, uint64_t uid, std::vector<uint64_t>& seqs) {
        store::expire_op op{uid, std::move(seqs), self->state.ctx->now()};
        self->state.ops.emplace_back(std::move(op));
        schedule_flush(self);
      },
      [=](change_atom, uint64_t uid, std::string& app, std::string& address,
          std::string& device, uint8_t type, const bytes& body) -> bytes {
        return run_change(self, uid, std::move(app), std::move(address),
                          std::move(device), type, body);
      },
      [=](admin_atom, uint8_t type, const bytes& body) -> bytes {
        flush(self); // keep admin changes ordered after queued messages
        try {
          return run_admin(self, type, body);
        } catch (const std::exception& e) {
          return reply_frame(
            0, status{status_code::internal,
                      std::string{"admin request failed: "} + e.what()});
        }
      },
      [=](sweep_atom) {
        auto now = self->state.ctx->now();
        self->state.ops.emplace_back(store::sweep_op{now, 1000});
        self->state.ops.emplace_back(store::trim_op{now, 10000});
        schedule_flush(self);
        self->delayed_send(self, std::chrono::seconds(1), sweep_atom::value);
      },
      [=](admin_atom, uint8_t type, const bytes& body, bytes_slot& slot) {
        flush(self);
        try {
          slot->set_value(run_admin(self, type, body));
        } catch (const std::exception& e) {
          slot->set_value(reply_frame(
            0, status{status_code::internal,
                      std::string{"admin request failed: "} + e.what()}));
        }
      },
      [=](flush_atom) -> bool {
        flush(self);
        return true;
      },
      [=](flush_atom, done_slot& slot) {
        flush(self);
        slot->set_value();
      },
      [=](tick_atom) { flush(self); },
    };
  };
  return sys.spawn<caf::detached>(fn, std::move(ctx));
}

} // namespace parley::srv
