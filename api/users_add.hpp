#pragma once

// users_add over admin frames, shared by admin_client (over TLS) and server
// (in process): the list checked as a whole, then sent a thousand addresses
// (codec::max_users_add) per admin_users_add, each one transaction on the
// server. Internal to api/.

#include "codec/frames.hpp"
#include "codec/protocol.hpp"

#include <parley/server.hpp>
#include <parley/status.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace parley::detail {

/// `call` sends one admin_users_add and returns its answer, a failed reply
/// as an error.
template<class Call>
result<std::vector<access_token>>
users_add(const std::string& app_id, const std::vector<std::string>& addresses,
          uint32_t token_ttl_s, Call&& call) {
  // Everything the server checks, checked here for the whole list first:
  // a refusal of the second thousand would leave the first created. (And a
  // repeat in different frames would get two tokens.)
  std::unordered_set<std::string_view> seen;
  seen.reserve(addresses.size());
  for (auto& a : addresses) {
    if (a.empty() || a.find('\0') != std::string::npos)
      return status{status_code::invalid_argument,
                    "a user address must not be empty nor contain NUL "
                    "bytes (entry " +
                      std::to_string(&a - addresses.data() + 1) + ")"};
    if (a.size() > codec::max_address)
      return status{status_code::invalid_argument,
                    "user address '" + a + "' is longer than " +
                      std::to_string(codec::max_address) + " bytes"};
    if (!seen.insert(a).second)
      return status{status_code::invalid_argument,
                    "user address '" + a +
                      "' is in the list twice: give each user once"};
  }
  std::vector<access_token> out;
  out.reserve(addresses.size());
  for (size_t at = 0; at < addresses.size(); at += codec::max_users_add) {
    auto n = std::min(codec::max_users_add, addresses.size() - at);
    codec::admin_users_add f;
    f.app_id = app_id;
    f.addresses.assign(addresses.begin() + static_cast<ptrdiff_t>(at),
                       addresses.begin() + static_cast<ptrdiff_t>(at + n));
    f.token_ttl_s = token_ttl_s;
    result<codec::frame> r = call(std::move(f));
    auto* toks = r ? std::get_if<codec::admin_tokens>(&*r) : nullptr;
    if (r && (toks == nullptr || toks->grants.size() != n))
      r = status{status_code::internal,
                 "the server answered users add without a token per user"};
    if (!r)
      return at == 0
               ? r.error()
               : r.error().annotate("after the first " + std::to_string(at) +
                                    " users were created");
    for (auto& g : toks->grants)
      out.push_back(access_token{toks->app_id, std::move(g.address),
                                 std::move(g.token), g.expires_at_ms});
  }
  return out;
}

} // namespace parley::detail
