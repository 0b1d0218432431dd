// Registry: listing, unknown names (with the known ones), duplicates, the catalog by kind.
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "core/error.h"
#include "core/registry/registry.h"

namespace {
struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Square : Shape {
  explicit Square(double s) : side(s) {}
  double area() const override { return side * side; }
  double side;
};
struct Circle : Shape {
  explicit Circle(double r) : radius(r) {}
  double area() const override { return 3.0 * radius * radius; }
  double radius;
};
}  // namespace

TEST_CASE("registry creates by name and lists entries sorted with descriptions", "[registry]") {
  sculpt::Registry<Shape, double> shapes("test_shapes");
  shapes.add("square", "four equal sides", [](double s) { return std::make_unique<Square>(s); });
  shapes.add("circle", "round", [](double r) { return std::make_unique<Circle>(r); });
  CHECK(shapes.create("square", 3.0)->area() == 9.0);
  CHECK(shapes.create("circle", 2.0)->area() == 12.0);
  auto entries = shapes.entries();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].name == "circle");
  CHECK(entries[0].description == "round");
  CHECK(entries[1].name == "square");
  CHECK(sculpt::find_registry("test_shapes") == &shapes);
}

TEST_CASE("registry: an unknown name lists the known names and a suggestion", "[registry]") {
  sculpt::Registry<Shape, double> shapes("test_shapes");
  shapes.add("square", "", [](double s) { return std::make_unique<Square>(s); });
  shapes.add("circle", "", [](double r) { return std::make_unique<Circle>(r); });
  try {
    shapes.create("sqare", 1.0);
    FAIL("no error");
  } catch (const sculpt::UnknownNameError& e) {
    std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("unknown test_shape 'sqare'"));
    CHECK_THAT(msg, Catch::Contains("did you mean 'square'?"));
    CHECK_THAT(msg, Catch::Contains("known test_shapes: circle, square"));
  }
  try {
    shapes.create("hexagon", 1.0);
    FAIL("no error");
  } catch (const sculpt::UnknownNameError& e) {
    CHECK_THAT(e.what(), !Catch::Contains("did you mean"));
  }
}

TEST_CASE("registry refuses a duplicate name", "[registry]") {
  sculpt::Registry<Shape, double> shapes("test_shapes");
  shapes.add("square", "", [](double s) { return std::make_unique<Square>(s); });
  CHECK_THROWS_WITH(shapes.add("square", "", [](double s) { return std::make_unique<Square>(s); }),
                    Catch::Contains("test_shape 'square' is already registered"));
}

TEST_CASE("a registry leaves the catalog when destroyed", "[registry]") {
  {
    sculpt::Registry<Shape, double> temp("test_temporary");
    CHECK(sculpt::find_registry("test_temporary") != nullptr);
  }
  CHECK(sculpt::find_registry("test_temporary") == nullptr);
}

TEST_CASE("every built-in family is in the catalog", "[registry]") {
  sculpt::cli::register_builtins();
  sculpt::cli::register_builtins();  // twice is harmless
  for (const char* kind : {"optimizers", "schedulers", "models", "datasets", "tasks", "trainers"}) {
    INFO(kind);
    auto* reg = sculpt::find_registry(kind);
    REQUIRE(reg != nullptr);
    CHECK_FALSE(reg->names().empty());
    for (const auto& e : reg->entries()) CHECK_FALSE(e.description.empty());
  }
  CHECK(sculpt::find_registry("optimizers")->contains("adamw"));
}
