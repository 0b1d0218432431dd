// The explicit registration lists of the families that live in core (DESIGN.md §5: nothing a
// linker can drop). Each list is one function; cli/ calls them all once per process.
#pragma once

namespace sculpt {
void register_core_builtins();
}  // namespace sculpt
