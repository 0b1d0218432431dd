// Typed errors. Library code throws; only main() catches and picks the exit code:
// UserError (bad config, bad input, bad usage) -> exit 2, anything else -> exit 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sculpt {

// A mistake the user can fix (file, key, value). Printed without a stack trace; exit code 2.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A name that no registry knows (lists the known ones in its message).
class UnknownNameError : public UserError {
 public:
  using UserError::UserError;
};

// A broken invariant inside Sculpt itself.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace sculpt

// User mistakes: SCULPT_CHECK(cond, "message parts", ...) throws sculpt::UserError.
#define SCULPT_CHECK(cond, ...)                                                    \
  do {                                                                             \
    if (!(cond)) throw ::sculpt::UserError(::sculpt::detail::concat(__VA_ARGS__)); \
  } while (0)

// Our own invariants: a failure is a bug in Sculpt.
#define SCULPT_ASSERT(cond, ...)                                                                   \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      throw ::sculpt::InternalError(::sculpt::detail::concat(__FILE__, ":", __LINE__, ": ", #cond, \
                                                             " failed: ", ##__VA_ARGS__,           \
                                                             " (this is a bug in Sculpt)"));       \
  } while (0)
