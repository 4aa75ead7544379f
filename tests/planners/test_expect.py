"""What a question expects: answer kinds, scene words, and the summarizer's grounded answers."""

from __future__ import annotations

from collections import Counter

from agentkit.mllm.backends.base import Generation
from agentkit.planners.expect import answer_kind, choose, grounded_answers, question_kind
from agentkit.state import Step
from agentkit.testing import ScriptedBackend


def test_question_and_answer_kinds():
    assert question_kind("Is there a red cube?") == "yes/no"
    assert question_kind("are there more cubes than balls?") == "yes/no"
    assert question_kind("Does the sphere have the same color as the cube?") == "yes/no"
    assert question_kind("How many red things are there?") == "a number"
    assert question_kind("What number of cubes are small?") == "a number"
    assert question_kind("Count the objects. How many are there?") == "a number"
    # a count asked for with its "of" lost (a misheard "What's the number of purple cylinders?")
    assert question_kind("What is the number purple cylinders?") == "a number"
    assert question_kind("What color is the country house?") == "a color"
    assert question_kind("Island count?") is None  # "is" only as a whole word
    assert question_kind("What color is the cube?") == "a color"
    assert question_kind("The tiny cylinder is made of what material?") == "a material"
    assert question_kind("How big is the cyan metal thing?") == "a size"
    assert question_kind("What is the small ball shaped like?") == "a shape"
    # the attribute it compares is not the one it asks for
    assert question_kind("What color is the thing of the same shape as the cube?") == "a color"
    assert question_kind("The other cube that has the same size as the ball is what material?") == (
        "a material"
    )
    assert question_kind("What color is the cube of that shape?") is None  # two, none compared
    assert question_kind("Describe the scene.") == "a description"
    assert question_kind("Describe the red cube.") is None
    assert [answer_kind(a) for a in ("yes", " No", "3", "-2.5", "red", "Balls", "big", "navy")] == [
        "yes/no", "yes/no", "a number", "a number", "a color", "a shape", "a size", "a value"
    ]  # fmt: skip


def result(ref: str, **fields) -> Step:
    return Step(role="executor", tool="t", ref=ref, result=fields)


CUBES = [{"shape": "cube", "color": "red", "size": "large"}, {"shape": "cube", "color": "blue"}]


def test_results_answers_come_before_what_object_lists_hold():
    steps = [
        Step(role="controller", thought="plan", observation="Final Answer: 9"),  # not a result
        result("objs", objects=[*CUBES, {"shape": "sphere", "color": "red"}]),
        result("cubes", objects=CUBES, count=2),
        result("n", count=2, of=3),
        result("colour", answer="blue", attribute="color"),
        Step(role="executor", tool="t", ref="bad", error="boom"),  # a failed call holds nothing
    ]
    assert grounded_answers("How many cubes are there?", steps) == ["2"]
    assert grounded_answers("What color is the small cube?", steps) == ["blue"]
    # no result answers with a size: the objects listed speak, once each
    assert grounded_answers("How big is the red cube?", steps) == ["large"]
    # a yes/no question nothing answered yes or no to may go either way
    assert grounded_answers("Is there a cube?", steps) == ["yes", "no"]
    assert grounded_answers("Is there a cube?", [*steps, result("found", exists=False)]) == ["no"]
    # no kind asked for, or none of it observed: the summarizer writes freely
    assert grounded_answers("Describe the scene.", steps) == []
    assert grounded_answers("What material is the cube?", steps) == []
    assert grounded_answers("How many cubes?", steps[:1]) == []


def test_a_search_that_found_nothing_answers_whether_something_is_there():
    """A question asking whether something is there, which no result answered yes or no to,
    is no once a search came back empty (the referent of "left of the red cube" not found):
    nothing seen says yes. Comparisons of counts, other yes/no questions, and runs whose
    searches all found something may still go either way."""
    from agentkit.planners.expect import asks_existence

    found = [result("objs", objects=CUBES), result("cubes", objects=CUBES, count=2)]
    empty = [*found, result("reds", objects=[], count=0)]
    failed = [*empty, Step(role="executor", tool="relate", ref="left", error="no reference")]
    assert grounded_answers("Is there a sphere left of the red cube?", failed) == ["no"]
    assert grounded_answers("Are there any spheres left of the red cube?", empty) == ["no"]
    # CLEVR's "There is a X; is there ... it?" read as one sentence (as the summarizer reads it)
    assert asks_existence("There is a red cube; is there a ball left of it?")
    assert grounded_answers("Is there a sphere left of the red cube?", found) == ["yes", "no"]
    for other in ("Are there more spheres than red cubes?", "Is the red cube large?",
                  "Are there an equal number of red cubes and balls?",
                  # no red things found: every cube is one that is not red
                  "Is there a cube that is not red?", "Are there any cubes that aren't red?"):  # fmt: skip
        assert not asks_existence(other)
        assert grounded_answers(other, failed) == ["yes", "no"]
    assert asks_existence("Do you see a red cube?")
    assert asks_existence("Does the image contain any balls?")


def test_a_value_of_an_object_not_found_is_not_read_off_the_other_objects():
    """What color is the third sphere from the left, of two? The select finds none, the query
    fails, and the colours of the objects detect listed are not the object's: no value to pick
    (the summarizer then gives no answer rather than a guess). Without a failure (a search
    that found nothing and a program that went on) or for a number, the lists still speak."""
    spheres = [{"shape": "sphere", "color": "red"}, {"shape": "sphere", "color": "blue"}]
    found = [result("objs", objects=[*CUBES, *spheres])]
    missed = [*found, result("third", objects=[], count=0)]
    failed = [*missed, Step(role="executor", tool="query", ref="c", error="has no objects")]
    assert grounded_answers("What color is the third sphere from the left?", failed) == []
    assert grounded_answers("What color is the sphere?", missed) == ["red", "blue"]
    assert grounded_answers("How many cubes are left of it?", failed) == ["4", "0"]
    answered = [*failed, result("colour", answer="red", attribute="color")]
    assert grounded_answers("What color is the third sphere?", answered) == ["red"]


class Scoring(ScriptedBackend):
    """A scripted backend that also scores replies: the likeliest is the one named."""

    def __init__(self, likeliest: str, replies=()) -> None:
        super().__init__(list(replies))
        self.likeliest = likeliest
        self.scored: list[list[str]] = []

    def score(self, messages, candidates):
        self.scored.append(candidates)
        return [0.0 if c.endswith(" " + self.likeliest) else -5.0 for c in candidates]


def test_choose_reads_the_models_likeliest_answer():
    backend = Scoring("3")
    gen, note = choose(backend, [], ["2", "3", "5"])
    assert isinstance(gen, Generation) and gen.text == "Final Answer: 3"
    assert backend.scored == [["Final Answer: 2", "Final Answer: 3", "Final Answer: 5"]]
    assert "2, 3, 5" in note
    # a lone answer takes no model call; nothing to choose from, or no scores: no choice
    gen, note = choose(backend, [], ["7"])
    assert gen.text == "Final Answer: 7" and len(backend.scored) == 1 and "only" in note
    assert choose(backend, [], []) is None
    assert choose(ScriptedBackend([]), [], ["2", "3"]) is None


def compare_program(a: str, b: str, relation: str):
    """Select the cubes and the balls, compare the counts of ``a`` and ``b`` by ``relation``."""
    from agentkit.planners import dsl

    return dsl.parse_program(
        "objs = detect(image=image_0)\ncubes = select(objects=objs, shape=\"cube\")\n"
        "balls = select(objects=objs, shape=\"sphere\")\n"
        f'answer = compare(a={a}, b={b}, relation="{relation}")\nANSWER = answer',
        ["detect", "select", "compare"], media=["image_0"],
    )  # fmt: skip


def test_a_comparison_is_held_to_the_relation_the_question_asks_for():
    """ "Is the number of cubes greater than ..." asks for relation="more": a program comparing
    "same" misses it. "How big is ..." names no size to filter by; "the same color as" names no
    comparison."""
    from agentkit.planners.expect import Expectation

    def program(relation: str):
        return compare_program("cubes", "balls", relation)

    greater = Expectation.of("Is the number of cubes greater than the number of balls?")
    assert greater.words == Counter({"cube": 1, "sphere": 1, "more": 1})
    assert greater.unmet(program("more"), "yes") is None
    assert greater.unmet(program("same"), "yes") == "the program misses more against the question"
    fewer = Expectation.of("Are there less cubes than balls?")
    assert "misses fewer and adds more" in fewer.unmet(program("more"), "no")
    assert Expectation.of("Are there as many cubes as balls?").unmet(program("same"), "no") is None
    assert Expectation.of("How big is the red cube?").words == Counter({"red": 1, "cube": 1})
    assert Expectation.of("Is there a ball of the same color as the cube?").words == Counter(
        {"sphere": 1, "cube": 1}
    )


def test_one_line_comparing_counts_is_held_to_the_comparison_the_question_asks():
    """Line by line a wrong ``compare`` relation cannot be mended by a later line: "greater"
    asks for more, "less" for fewer, a question naming neither for same. Other tools' relations
    (``relate``'s left/right) are not comparisons."""
    from agentkit.planners.expect import Expectation
    from agentkit.state import ToolCall

    def line(relation: str, tool: str = "compare") -> ToolCall:
        return ToolCall(tool=tool, args={"a": "cubes", "b": "balls", "relation": relation})

    greater = Expectation.of("Is the number of cubes greater than the number of balls?")
    names = ["cubes", "balls"]
    assert greater.turn_unmet(line("more"), names) is None
    assert greater.turn_unmet(line("same"), names) == (
        "the line compares with same, but the question asks for more"
    )
    less = Expectation.of("Is the number of cubes less than the number of balls?")
    assert "asks for fewer" in less.turn_unmet(line("same"), names)
    assert "compares with more" in less.compared(line("more"))  # also a word it does not name
    assert less.turn_unmet(line("fewer"), names) is None
    equal = Expectation.of("Is there an equal number of cubes and balls?")
    assert equal.turn_unmet(line("same"), names) is None
    assert "asks for same" in equal.compared(line("fewer"))
    assert greater.compared(line("left", tool="relate")) is None


def test_one_call_filters_by_the_values_of_one_object_of_the_question():
    """ "small purple" for "the small objects left of the big purple thing" joins words of two
    objects: every word is in the question, yet no object there is small and purple. A call
    whose values all describe one object fits, however few of them it names."""
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation, phrases
    from agentkit.state import ToolCall

    question = "How many small objects are on the left side of the big purple thing?"
    assert phrases(question) == (frozenset({"small"}), frozenset({"large", "purple"}))
    assert phrases("How many things are small rubber or cylinders?") == (
        frozenset({"small", "rubber"}), frozenset({"cylinder"}))  # fmt: skip
    assert phrases("How big is the gray cube?") == (frozenset({"gray", "cube"}),)
    expect = Expectation.of(question)

    def select(**filters: str) -> ToolCall:
        return ToolCall(tool="select", args={"objects": "objs", **filters}, name="sel")

    mixed = expect.turn_unmet(select(size="small", color="purple"), ["objs"])
    assert mixed == "the line filters by small purple, which no one object of the question is"
    assert expect.turn_unmet(select(size="large", color="purple"), ["objs"]) is None
    assert expect.turn_unmet(select(color="purple"), ["objs"]) is None
    # a variable named after values is no filter
    assert expect.turn_unmet(ToolCall(tool="count", args={"objects": "small_purple_things"}),
                             ["small_purple_things"]) is None  # fmt: skip

    def program(first: str, size: str = "small") -> dsl.Program:
        return dsl.parse_program(
            f"objs = detect(image=image_0)\nref = select(objects=objs, {first})\n"
            'lefts = relate(objects=objs, reference=ref, relation="left")\n'
            f"n = count(objects=lefts, where={{'size': '{size}'}})\nANSWER = n",
            ["detect", "select", "relate", "count"], media=["image_0"],
        )  # fmt: skip

    assert expect.unmet(program('size="large", color="purple"'), "2") is None
    # the question's words, each as often, but the sizes swapped between its two objects
    assert expect.unmet(program('size="small", color="purple"', "large"), "2") == (
        "ref = select(...): the line filters by small purple, which no one object of the "
        "question is"
    )
    # a filter left out when a select found nothing: the object keeps its other values
    assert expect.without("large").objects == (frozenset({"small"}), frozenset({"purple"}))


def test_a_relation_is_taken_from_the_object_the_question_puts_after_it():
    """ "the large metal thing right of the tiny gray thing": `right` is taken from the tiny
    gray one. A relate whose reference was selected as large and metal reads the question the
    wrong way round, in a program or in one line of react."""
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation, references
    from agentkit.state import ToolCall

    question = "What shape is the large metal thing right of the tiny gray thing?"
    assert references(question) == {"right": (frozenset({"small", "gray"}),)}
    assert references("Are there cubes left of the ball or left of the red cube?") == {
        "left": (frozenset({"sphere"}), frozenset({"red", "cube"}))}  # fmt: skip
    expect = Expectation.of(question)
    relate = ToolCall(
        tool="relate", args={"objects": "objs", "reference": "ref", "relation": "right"}
    )
    assert expect.turn_unmet(relate, ["objs", "ref"], {"ref": {"small", "gray"}}) is None
    assert expect.turn_unmet(relate, ["objs", "ref"], {"ref": {"gray"}}) is None
    assert expect.turn_unmet(relate, ["objs", "ref"], {"ref": {"large", "metal"}}) == (
        "the line takes right from ref (large metal), but the question takes it from the small gray"
    )

    def program(ref: str, target: str) -> dsl.Program:
        return dsl.parse_program(
            f"objs = detect(image=image_0)\nref = select(objects=objs, {ref})\n"
            'rights = relate(objects=objs, reference=ref, relation="right")\n'
            f"it = select(objects=rights, {target})\n"
            'ANSWER = query(objects=it, attribute="shape")',
            ["detect", "select", "relate", "query"], media=["image_0"],
        )  # fmt: skip

    small_gray, large_metal = 'size="small", color="gray"', 'size="large", material="metal"'
    assert expect.unmet(program(small_gray, large_metal), "cube") is None
    assert "rights = relate(...): the line takes right from ref" in expect.unmet(
        program(large_metal, small_gray), "cube"
    )


def test_a_question_comparing_an_attribute_needs_same_on_it_between_two_results():
    """ "Is the large cylinder the same color as the small cube in front of the sphere?" is
    answered by ``same(..., attribute="color")`` between the two phrases' results; an existence
    program over the same words (the core's relate_exist reading) or a ``same`` of one result
    against itself answers another question."""
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation, compared_attribute

    head = (
        "objs = detect(image=image_0)\n"
        'cyls = select(objects=objs, size="large", shape="cylinder")\n'
        'balls = select(objects=objs, shape="sphere")\n'
        'ahead = relate(objects=objs, reference=balls, relation="front")\n'
        'cubes = select(objects=ahead, size="small", shape="cube")\n'
    )
    tools = ["detect", "select", "relate", "same", "exist", "count"]

    def program(tail: str) -> dsl.Program:
        return dsl.parse_program(head + tail, tools, media=["image_0"])

    q = "Is the large cylinder the same color as the small cube in front of the sphere?"
    expect = Expectation.of(q)
    assert expect.same == "color"
    right = program('s = same(objects=cubes, reference=cyls, attribute="color")\n'
                    "found = exist(objects=s)\nANSWER = found")  # fmt: skip
    assert expect.unmet(right, "yes") is None
    other_attr = program('s = same(objects=cubes, reference=cyls, attribute="shape")\n'
                         "found = exist(objects=s)\nANSWER = found")  # fmt: skip
    assert 'no line calls same(..., attribute="color")' in expect.unmet(other_attr, "no")
    itself = program('s = same(objects=cubes, reference=cubes, attribute="color")\n'
                     "n = count(objects=cyls)\nfound = exist(objects=s)\nANSWER = found")  # fmt: skip
    assert expect.unsame(itself) == "same(...) compares a result with itself"
    # every phrasing of the family and of same_count / same_exist; none for other questions
    assert compared_attribute("Is the size of the red cube the same as the ball?") == "size"
    assert compared_attribute("Do the cube and the ball have the same shape?") == "shape"
    assert (
        compared_attribute("How many other things are made of the same material as the cube?")
        == "material"
    )
    assert compared_attribute("Is there a ball of the same colour as the cube?") == "color"
    assert compared_attribute("Are there the same number of cubes and balls?") is None
    # a question that compares no attribute has no same(...) to call: "Can you count the
    # green things?" written as the green things' material's matches answers another question
    counting = Expectation.of("How many red cubes are there?")
    assert counting.unsame(program("n = count(objects=cubes)\nANSWER = n")) is None
    assert counting.unsame(right) == (
        "the program compares an attribute with same(...), but the question compares none"
    )


def test_a_comparison_of_counts_counts_the_question_objects_in_its_order():
    """ "Are there more cubes than spheres?" counts the cubes as ``a``: the other way round
    answers another question; "as many ... as" (same) has no order."""
    from agentkit.planners.expect import Expectation

    program = compare_program
    more = Expectation.of("Are there more cubes than spheres?")
    assert more.unmet(program("cubes", "balls", "more"), "yes") is None
    assert more.unmet(program("balls", "cubes", "more"), "no") == (
        "answer = compare(...): the line counts balls (sphere) as a and cubes (cube) as b, "
        "but the question names them the other way"
    )
    fewer = Expectation.of("Is the number of spheres less than the number of cubes?")
    assert fewer.unmet(program("balls", "cubes", "fewer"), "yes") is None
    assert "the other way" in fewer.unmet(program("cubes", "balls", "fewer"), "no")
    same = Expectation.of("Are there as many spheres as cubes?")
    assert same.unmet(program("cubes", "balls", "same"), "no") is None


def test_a_question_about_one_object_is_reworded_as_the_templates_word_it():
    from agentkit.planners.expect import canonical_question

    assert {
        q: canonical_question(q)
        for q in (
            "How many red things?",
            "Count the spheres.",
            "How many spheres are made of metal?",
            "How many cubes are red?",
            "What number of big things are there?",
            "How many objects?",
            "Is the red cube large?",
            "Is there a big rubber thing?",
            "Which color is the shiny ball?",
            "What is the purple cube made of?",
        )
    } == {  # fmt: skip
        "How many red things?": "How many red things are there?",
        "Count the spheres.": "How many spheres are there?",
        "How many spheres are made of metal?": "How many metal spheres are there?",
        "How many cubes are red?": "How many red cubes are there?",
        "What number of big things are there?": "How many large things are there?",
        "How many objects?": "How many things are there?",
        "Is the red cube large?": "Are there any large red cubes?",
        "Is there a big rubber thing?": "Are there any large rubber things?",
        "Which color is the shiny ball?": "What color is the metal sphere?",
        "What is the purple cube made of?": "What material is the purple cube?",
    }
    # Not one object described by attribute words, or already in the templates' words:
    for q in (
        "How many objects are not cubes?",  # a negation
        "Are all the spheres red?",  # a quantifier
        "How many small red or blue things?",  # two values of one attribute
        "How many cubes or spheres are there?",  # two objects
        "Are there more cubes than spheres?",  # a comparison
        "Is there a cube behind the blue sphere?",  # a relation
        "Is the sphere the same color as the cube?",  # an attribute compared
        "What color is the red cube?",  # the value asked is given
        "Tell me about the picture.",  # no kind of answer
        "How many red things are there?",  # already so worded
    ):
        assert canonical_question(q) is None, q


def test_clevrs_there_is_form_is_read_as_one_sentence_about_its_object():
    """CLEVR's "There is a X; ... it?": the kind of answer, the objects, the relation's object
    and the rewording are those of the question with X where "it" stood."""
    from agentkit.planners.expect import Expectation, canonical_question, resolved

    assert {
        q: resolved(q)
        for q in (
            "There is a big cube; what color is it?",
            "There is a tiny brown thing; what is its material?",
            "There is a blue sphere; how many objects are left of it?",
            "There is a cube that is behind the ball; is it the same size as the cylinder?",
            "There is a red cube, does it have the same shape as the large thing?",
            "Is there a red cube?",
            "There is a red cube; how many spheres are there?",
        )
    } == {  # fmt: skip
        "There is a big cube; what color is it?": "What color is the big cube?",
        "There is a tiny brown thing; what is its material?":
            "What is the material of the tiny brown thing?",
        "There is a blue sphere; how many objects are left of it?":
            "How many objects are left of the blue sphere?",
        "There is a cube that is behind the ball; is it the same size as the cylinder?":
            "Is the cube that is behind the ball the same size as the cylinder?",
        "There is a red cube, does it have the same shape as the large thing?":
            "Does the red cube have the same shape as the large thing?",
        "Is there a red cube?": "Is there a red cube?",  # not the form
        "There is a red cube; how many spheres are there?":  # no "it": not the form either
            "There is a red cube; how many spheres are there?",
    }  # fmt: skip
    left = Expectation.of("There is a blue sphere; how many objects are left of it?")
    assert left.kind == "a number" and left.relations == {"left": (frozenset({"blue", "sphere"}),)}
    same = Expectation.of("There is a big cube; is it the same size as the metal cylinder?")
    assert same.kind == "yes/no" and same.same == "size"
    assert Expectation.of("There is a large ball; how big is it?").kind == "a size"
    # the rewording reads the one sentence the models read (roles.question resolves it)
    assert canonical_question(resolved("There is a big shiny cube; what is its color?")) == (
        "What color is the large metal cube?"
    )


def test_a_request_asks_for_the_kind_of_answer_it_requests():
    assert {
        q: question_kind(q)
        for q in (
            "Can you count the green things?",
            "Please count the cylinders.",
            "Could you please tell me what color the metal cube is?",
            "Tell me the shape of the red thing.",
            "Name the color of the large rubber sphere.",
            "Can you tell me how many red things there are?",
            "What's the number of yellow spheres?",
            "Can you see a red cube?",
            "Is the number of cubes greater than the number of spheres?",
        )
    } == {  # fmt: skip
        "Can you count the green things?": "a number",
        "Please count the cylinders.": "a number",
        "Could you please tell me what color the metal cube is?": "a color",
        "Tell me the shape of the red thing.": "a shape",
        "Name the color of the large rubber sphere.": "a color",
        "Can you tell me how many red things there are?": "a number",
        "What's the number of yellow spheres?": "a number",
        "Can you see a red cube?": "yes/no",  # a question, not a request
        "Is the number of cubes greater than the number of spheres?": "yes/no",
    }


def test_opinions_embedded_questions_and_counts_asked_as_nouns():
    assert {
        q: question_kind(q)
        for q in (
            "Would you say the cylinder is purple?",
            "Do you think there is a red cube?",
            "Do you know what the tiny blue sphere is made of?",
            "Do you know how many cubes there are?",
            "Do you know whether the cube is red?",
            "Do you know the cube?",
            "What is the count of tiny purple things?",
            "Give me the number of small spheres.",
        )
    } == {  # fmt: skip
        "Would you say the cylinder is purple?": "yes/no",
        "Do you think there is a red cube?": "yes/no",
        "Do you know what the tiny blue sphere is made of?": "a material",
        "Do you know how many cubes there are?": "a number",
        "Do you know whether the cube is red?": "yes/no",
        "Do you know the cube?": "yes/no",  # nothing embedded: a yes/no question
        "What is the count of tiny purple things?": "a number",
        "Give me the number of small spheres.": "a number",
    }


def test_values_after_the_noun_describe_the_same_object():
    """ "cylinders that are tiny", "spheres made of metal", "the cylinder is purple": one
    object, so one select may filter by both (the word rule), and the rewording says so."""
    from agentkit.planners.expect import canonical_question, phrases

    small_cylinders = (frozenset({"small", "cylinder"}),)
    assert phrases("How many cylinders that are tiny are there?") == small_cylinders
    assert phrases("How many cylinders which are small do you see?") == small_cylinders
    assert phrases("Is the large gray cylinder metal?") == (
        frozenset({"large", "gray", "metal", "cylinder"}),)  # fmt: skip
    assert canonical_question("I want to know how many cylinders that are tiny there are.") == (
        "How many small cylinders are there?")  # fmt: skip
    assert canonical_question("Would you say the cylinder is purple?") == (
        "Are there any purple cylinders?")  # fmt: skip
    # two objects still: a relation between, a list, a value of the attribute the noun has
    assert len(phrases("Is the cube that is left of the sphere red?")) == 3
    assert len(phrases("How many things are small rubber or cylinders?")) == 2
    assert len(phrases("How many cubes are spheres?")) == 2
    assert len(phrases("Is the red thing blue?")) == 2  # no noun that the values follow


def test_programs_for_negation_and_all_fit_their_questions():
    """The reference programs for "How many cubes are not red?" (the red things selected apart
    and taken away) and "Are all the cubes red?" fit what the questions expect: every scene
    word named once, no line filtering by two objects' values, nothing left unread. A program
    dropping the negated value does not."""
    from agentkit.mllm.data import programs_to_tools as P
    from agentkit.mllm.worlds.questions import generate_questions
    from agentkit.mllm.worlds.synthetic import synthetic_scene
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation

    scenes = [synthetic_scene(s) for s in range(40)]
    qs = generate_questions(
        scenes, per_scene=3, seed=2, families=["not_count", "not_exist", "every"]
    )
    assert len(qs) > 100
    for q in qs:
        program = dsl.parse_program(P.to_program(P.to_plan(q["program"])), P.PLAN_TOOLS)
        assert Expectation.of(q["question"]).unmet(program, q["answer"]) is None, q["question"]
    dropped = dsl.parse_program(
        'objs = detect(image=image_0)\ncubes = select(objects=objs, shape="cube")\n'
        "n = count(objects=cubes)\nANSWER = n",
        P.PLAN_TOOLS,
    )
    assert "misses red" in Expectation.of("How many cubes are not red?").unmet(dropped, "3")


def test_combine_joins_as_the_questions_negation_allows():
    """A negated question ("cubes that are not red", "isn't") takes the objects away
    (``combine``'s difference); one that negates nothing joins by union or intersection (by
    union alone when it says "or", by intersection alone when it says "both"); a negated one
    that also says "or" may take any. The word rule holds ``op`` to that as it is
    written, and the fit check names a program that joins otherwise."""
    from agentkit.mllm.data.programs_to_tools import PLAN_TOOLS
    from agentkit.planners import dsl
    from agentkit.planners.expect import Expectation

    def op_words(question):
        return Expectation.of(question).words_for("combine", "op", ())

    assert op_words("How many cubes are not red?") == ("difference",)
    assert op_words("Is there a thing that isn't a cube?") == ("difference",)
    assert op_words("How many objects other than cubes are there?") == ("difference",)
    assert op_words("How many other cubes are the same size as the ball?") == (
        "union",
        "intersection",
    )
    assert op_words("How many things are red or cubes?") == ("union",)
    assert op_words("Is there anything that is both red and a cube?") == ("intersection",)
    assert op_words("How many objects are red and cubes?") == ("union", "intersection")
    assert op_words("Is there a cube that is not red or blue?") is None
    # "all": no cube left without the red things, or as many red cubes as cubes; never a union
    assert op_words("Are all the cubes red?") == ("intersection", "difference")
    assert op_words("Is every large thing a cylinder?") == ("intersection", "difference")
    assert op_words("Count all the cubes that are red or metal.") == ("union",)  # not universal
    assert op_words("Are all the cubes either red or metal?") is None

    def program(op):
        return dsl.parse_program(
            'objs = detect(image=image_0)\ncubes = select(objects=objs, shape="cube")\n'
            'reds = select(objects=objs, color="red")\n'
            f'rest = combine(a=cubes, b=reds, op="{op}")\nn = count(objects=rest)\nANSWER = n',
            PLAN_TOOLS,
        )

    negated = Expectation.of("How many cubes are not red?")
    assert negated.unmet(program("difference"), "2") is None
    assert "joins by intersection" in negated.unmet(program("intersection"), "2")
    both = Expectation.of("How many things are both cubes and red?")
    assert 'joins by difference, but the question says "both"' in both.unmet(
        program("difference"), "2"
    )
    assert "joins by union" in both.unmet(program("union"), "2")
    every = Expectation.of("Are all the cubes red?")
    assert "asks of all of a set: intersection or difference" in every.unmet(
        program("union"), "yes"
    )


def test_users_short_forms_ask_what_the_templates_long_forms_ask():
    """Words a user leaves out or puts otherwise (found asking about the real CLEVR image)."""
    from agentkit.planners.expect import Expectation, canonical_question

    assert question_kind("Any cylinders?") == "yes/no"
    assert question_kind("Number of spheres?") == "a number"
    assert question_kind("Total number of cubes?") == "a number"
    # a material said of the object is no material asked for
    rubber_cube = Expectation.of("What color is the cube that is made of rubber?")
    assert rubber_cube.kind == "a color" and rubber_cube.objects == (frozenset({"cube", "rubber"}),)
    assert question_kind("What is the big cube made of?") == "a material"
    assert Expectation.of("Do the spheres outnumber the cubes?").comparisons() == ("more",)
    # a thing is named by its shape here
    assert question_kind("Which object is purple?") == "a shape"
    assert canonical_question("Which object is purple?") == "What shape is the purple thing?"


def test_exist_is_no_step_of_a_comparison_of_two_counts():
    """ "Are there more cylinders than cubes?": the core wrote ``exist(cylinders)``; a question
    that surely compares two counts leaves ``exist`` out of the grammar (not one asking "more
    than two", which no tool here compares with a set)."""
    from agentkit.planners.expect import Expectation

    for q in (
        "Are there more cylinders than cubes?",
        "Are there fewer cubes than balls?",
        "Are there as many cubes as spheres?",
        "Is there the same number of cubes and balls?",
        "Is the number of metal things greater than the number of rubber things?",
        "Do the spheres outnumber the cubes?",
    ):
        assert "exist" in Expectation.of(q).unfit_tools(), q
    for q in ("Are there more than two cubes?", "Is there a cube?", "Is any cube red?"):
        assert "exist" not in Expectation.of(q).unfit_tools(), q


def test_a_value_said_of_the_named_object_is_read_as_its_attribute_question():
    from agentkit.planners.expect import attribute_check

    assert attribute_check("Is the purple cube red?") == (
        "What color is the purple cube?", "color", "red"
    )  # fmt: skip
    assert attribute_check("Is the small gray cube shiny?") == (
        "What material is the small gray cube?", "material", "metal"
    )  # fmt: skip
    assert attribute_check("Is the red thing a sphere?") == (
        "What shape is the red thing?", "shape", "sphere"
    )  # fmt: skip
    assert attribute_check("Is the cube left of the ball made of metal?") == (
        "What material is the cube left of the ball?", "material", "metal"
    )  # fmt: skip
    for q in (
        "Is the gray cube in front of the cyan cylinder?",  # a relation, not a value
        "Is the cube left of the sphere?",
        "Is the sphere cube?",  # a shape is said with "a"
        "Is the red cube red?",  # nothing to check
        "Is there a red cube?",
        "Is the cube not red?",
        "Is the sphere the same color as the cube?",
        "Are the cubes red?",  # of all of them, or of one?
    ):
        assert attribute_check(q) is None, q


def test_comparisons_in_clevrs_words_are_reworded_as_the_templates_word_them():
    from agentkit.planners.expect import canonical_question

    assert canonical_question("Are the blue sphere and the purple cube the same material?") == (
        "Is the blue sphere the same material as the purple cube?"
    )
    assert canonical_question("Do the large cylinder and the small cube have the same colour?") == (
        "Is the large cylinder the same color as the small cube?"
    )
    assert canonical_question("Does the blue sphere have the same size as the purple cube?") == (
        "Is the blue sphere the same size as the purple cube?"
    )
    assert canonical_question("Do the spheres outnumber the cubes?") == (
        "Are there more spheres than cubes?"
    )
    assert canonical_question("Do the red things outnumber the cubes or spheres?") is None


def test_an_object_named_with_a_superlative_is_read_as_its_plain_name_and_a_most():
    from agentkit.planners.expect import Superlative, superlative

    def read(q: str) -> tuple[str, str, dict[str, str]] | None:
        sup = superlative(q)
        return None if sup is None else (sup.question, sup.most, sup.filters)

    assert read("What color is the leftmost cube?") == (
        "What color is the cube?", "left", {"shape": "cube"}
    )  # fmt: skip
    assert read("How many spheres are left of the biggest metal block?") == (
        "How many spheres are left of the metal block?", "large",
        {"material": "metal", "shape": "cube"},
    )  # fmt: skip
    assert read("What shape is the object on the far right?") == (
        "What shape is the object?", "right", {}
    )  # fmt: skip
    assert read("What color is the thing that is closest to the camera?")[1:] == ("front", {})
    assert read("What color is the object farthest from the camera?")[1] == "behind"
    assert read("What is the thing furthest to the left made of?") == (
        "What is the thing made of?", "left", {}
    )  # fmt: skip
    assert read("What color is the cylinder furthest back?")[1] == "behind"
    assert read("What color is the sphere in the very back?")[1] == "behind"
    assert read("What color is the nearest one?") == ("What color is the object?", "front", {})
    assert read("Is the smallest sphere red?") == (
        "Is the sphere red?",
        "small",
        {"shape": "sphere"},
    )
    # which object it is: its shape, as "Which object is purple?" asks
    for q in ("Which object is leftmost?", "Which object is the biggest?",
              "What is the smallest object?", "What is the closest object to the camera?"):  # fmt: skip
        assert superlative(q) == Superlative("What shape is the object?", superlative(q).most, {})
    for q in (
        "What color is the big cube?",  # a size, not the biggest
        "What color is the large cube left of the sphere?",
        "How many objects are to the left of the cube?",  # a relation
        "Is the red cube the leftmost object?",  # which object, not what of it
    ):
        assert superlative(q) is None, q
    # "the biggest of the cubes" is the biggest cube
    assert read("What is the leftmost one of the red things made of?") == (
        "What is the red thing made of?", "left", {"color": "red"}
    )  # fmt: skip
    assert read("How many spheres are left of the smallest of the metal cylinders?")[1:] == (
        "small", {"material": "metal", "shape": "cylinder"}
    )  # fmt: skip


def test_an_ordinal_ranks_a_superlative_further():
    from agentkit.planners.expect import superlative, superlatives

    def read(q: str) -> tuple[str, str, dict[str, str], int, str] | None:
        sup = superlative(q)
        return None if sup is None else (sup.question, sup.most, sup.filters, sup.rank, sup.word)

    # "from the <side>" is said as that side's superlative, the ordinal before it
    assert read("What color is the second cube from the left?") == (
        "What color is the cube?", "left", {"shape": "cube"}, 2, "second leftmost"
    )  # fmt: skip
    assert read("What color is the second leftmost cube?") == read(
        "What color is the second cube from the left?"
    )
    assert read("Is the third red sphere from the front metal?") == (
        "Is the red sphere metal?", "front", {"color": "red", "shape": "sphere"}, 3,
        "third nearest",
    )  # fmt: skip
    assert read("What shape is the second from the right?") == (
        "What shape is the object?", "right", {}, 2, "second rightmost"
    )  # fmt: skip
    assert read("How many spheres are left of the third-biggest metal thing?")[1:4] == (
        "large", {"material": "metal"}, 3
    )  # fmt: skip
    assert read("What material is the 2nd smallest of the red things?") == (
        "What material is the red thing?", "small", {"color": "red"}, 2, "second smallest"
    )  # fmt: skip
    assert read("What color is the second closest cube to the camera?")[1:4] == (
        "front", {"shape": "cube"}, 2
    )  # fmt: skip
    sup = superlative("What color is the second sphere from the back?")
    assert sup is not None and sup.select_args == {"shape": "sphere", "most": "behind", "rank": 2}
    sup = superlative("What color is the leftmost sphere?")
    assert sup is not None and sup.select_args == {"shape": "sphere", "most": "left"}
    # an ordinal without a superlative ranks nothing: "the second cube" is no reading of ours
    assert superlative("What color is the second cube?") is None
    assert [s.rank for s in superlatives(
        "Are the second object from the left and the rightmost object the same color?"
    )] == [2, 1]  # fmt: skip


def test_several_superlatives_are_read_first_to_last():
    from agentkit.planners.expect import superlatives

    sups = superlatives("Are the leftmost object and the biggest sphere the same color?")
    assert [(s.question, s.most, s.filters) for s in sups] == [
        ("Are the object and the biggest sphere the same color?", "left", {}),
        ("Are the object and the sphere the same color?", "large", {"shape": "sphere"}),
    ]
    assert [s.named for s in sups] == ["the object", "the sphere"]
    assert superlatives("How many cubes are there?") == []


def test_every_generated_superlative_is_read_as_its_program_says():
    """The worlds' superlative questions (every way, before and after the noun, in the query's
    and the relation's templates; ordinals too): read as the program's ``most``, its rank and
    the filters before it."""
    from agentkit.mllm.worlds.questions import generate_questions
    from agentkit.mllm.worlds.synthetic import synthetic_scene
    from agentkit.planners.expect import superlative

    fams = ["most_query", "most_count", "most_exist", "nth_query", "nth_count", "nth_exist"]
    qs = generate_questions([synthetic_scene(s) for s in range(100)], per_scene=3, families=fams)
    assert len(qs) > 250 and {q["family"] for q in qs} == set(fams)
    for q in qs:
        program = q["program"]
        at = next(i for i, n in enumerate(program) if n["function"] == "most")
        filters = {n["function"].removeprefix("filter_"): n["value_inputs"][0]
                   for n in program[:at] if n["function"].startswith("filter_")}  # fmt: skip
        sup = superlative(q["question"])
        way, *rank = program[at]["value_inputs"]
        assert sup is not None and (sup.most, sup.filters, sup.rank) == (
            way, filters, int(rank[0]) if rank else 1
        ), q["question"]  # fmt: skip
