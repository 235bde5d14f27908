"""The LLM proposer: sends the rendered prompt to a model and reads a candidate out of the answer."""

from __future__ import annotations

import random
from collections.abc import Mapping

from engine.llm.client import LLMClient
from engine.llm.config import LLMConfig
from engine.llm.errors import CompletionParseError, LLMResponseError
from engine.llm.mix import ModelMix
from engine.proposers.parsing import (
    add_missing_definitions,
    apply_search_replace,
    extract_candidate,
    prompt_header,
    rename_function,
)
from engine.proposers.base import PromptContext, Proposal
from engine.proposers.repair import repair_jax

PARAMS_CONVENTION = (
    "Keep the convention of the versions above: the function's first statement (after its docstring) is a literal "
    'dict PARAMS = {{"name": (low, high), ...}} declaring every free parameter with finite bounds, and the body '
    'reads each one as params["name"].'
)
REWRITE_INSTRUCTION = (
    "Write {versioned}, an improved version of the functions below. Reply with the complete function "
    "`def {versioned}(...)` in one ```python block; you may add imports and helper functions above it. "
    + PARAMS_CONVENTION
)
DIFF_INSTRUCTION = (
    "Write {versioned} by editing {previous}, the last function below. Reply only with SEARCH/REPLACE blocks:\n"
    "<<<<<<< SEARCH\n<lines copied exactly from {previous}>\n=======\n<the lines that replace them>\n"
    ">>>>>>> REPLACE\n" + PARAMS_CONVENTION
)


class LLMProposer:
    """Proposes candidates by asking an LLM, one request per proposal.

    Args:
        clients: a `ModelMix` (several models drawn by weight) or a single `LLMClient`.
        edit_format: "rewrite" asks for the whole function; "diff" asks for SEARCH/REPLACE blocks against the
            best shot and reads the answer as a rewrite when they do not apply.
        answers_per_request: the most answers one request returns (the largest `samples` of the models), so
            the loop does not ask for more candidates than its budget has room for.

    `propose` returns a `Proposal` with an `error` (and no source) when the answer holds no usable code, and
    raises the `LLMError`s that should stop a run: `LLMAuthError`, `LLMBudgetExhausted`,
    `LLMUnavailableError`, `LLMRequestError`.
    """

    def __init__(self, clients: ModelMix | LLMClient, edit_format: str = "rewrite",
                 answers_per_request: int = 1, prompt_style: str = "chat") -> None:
        if edit_format not in ("rewrite", "diff"):
            raise ValueError(f"edit_format must be 'rewrite' or 'diff', got {edit_format!r}")
        if prompt_style not in ("chat", "completion"):
            raise ValueError(f"prompt_style must be 'chat' or 'completion', got {prompt_style!r}")
        self.mix = clients if isinstance(clients, ModelMix) else ModelMix([clients])
        self.edit_format = edit_format
        self.answers_per_request = answers_per_request
        self.prompt_style = prompt_style

    @classmethod
    def from_config(cls, config: LLMConfig, environ: Mapping[str, str] | None = None) -> LLMProposer:
        """Builds the proposer, its SDK client and one client per model; keys are read from `environ`.

        Raises:
            LLMAuthError: a model's key variable is unset and no base_url is configured.
        """
        return cls(ModelMix.from_config(config, environ), edit_format=config.edit_format,
                   answers_per_request=max(model.samples for model in config.models),
                   prompt_style=config.prompt_style)

    def __repr__(self) -> str:
        return f"LLMProposer({self.mix!r}, edit_format={self.edit_format!r})"

    async def aclose(self) -> None:
        """Closes the SDK clients' connections; call once at the end of a run."""
        await self.mix.aclose()

    def instruction(self, context: PromptContext) -> str:
        """Returns the request put before the prompt: which function to write, and in which format."""
        versioned = f"{context.function_name}_v{context.next_version}"
        previous = f"{context.function_name}_v{context.next_version - 1}"
        use_diff = self.edit_format == "diff" and context.shots
        text = (DIFF_INSTRUCTION if use_diff else REWRITE_INSTRUCTION).format(versioned=versioned, previous=previous)
        if context.primitives:
            text += " Functions you may use as wrappers: " + ", ".join(context.primitives) + "."
        return text

    def messages(self, context: PromptContext) -> tuple[str, str]:
        """Returns (system text, prompt) for one request.

        A completion model gets FunSearch's versioned text alone, ending at the header it continues. A chat
        model gets the rules as system text and the programs with the request as the prompt; a context
        rendered without a chat form gets the instruction followed by the versioned text.
        """
        if self.prompt_style == "completion":
            return "", context.text
        if not context.chat_user:
            return "", self.instruction(context) + "\n\n" + context.text
        prompt = context.chat_user
        if self.edit_format == "diff" and context.shots:
            versioned = f"{context.function_name}_v{context.next_version}"
            previous = f"{context.function_name}_v{context.next_version - 1}"
            prompt += "\n\n" + DIFF_INSTRUCTION.format(versioned=versioned, previous=previous)
        return context.chat_system, prompt

    async def propose(self, context: PromptContext) -> list[Proposal]:
        """Asks one model (drawn with `context.seed`) for the next version and returns its answer as a candidate.

        A model configured with `samples` > 1 answers several times in one request: then one proposal comes back
        per answer, sharing the request's tokens and cost.
        """
        client = self.mix.choose(random.Random(context.seed))
        try:
            system, prompt = self.messages(context)
            completion = await client.complete(prompt, system=system)
        except LLMResponseError as error:
            return [Proposal(source="", proposer="llm", error=f"unusable response: {error}")]
        answers = [(completion.text, completion.truncated), *completion.alternatives]
        name = f"llm:{completion.model}"
        proposals = []
        for index, (text, truncated) in enumerate(answers):
            tokens = completion.tokens // len(answers) + (completion.tokens % len(answers) if index == 0 else 0)
            cost_usd = completion.cost_usd / len(answers)
            try:
                source = self.candidate_source(text, context, truncated)
                source, repairs = repair_jax(source, context.function_name, [shot.source for shot in context.shots])
            except CompletionParseError as error:
                proposals.append(Proposal(source="", proposer=name, tokens=tokens, cost_usd=cost_usd, error=str(error)))
                continue
            except (RecursionError, MemoryError):  # Python's parser and tree walkers give up on very deep nesting
                proposals.append(Proposal(source="", proposer=name, tokens=tokens, cost_usd=cost_usd,
                                          error="the answer's code is nested too deeply to read."))
                continue
            label = f"{name} repaired: {', '.join(repairs)}" if repairs else name
            proposals.append(Proposal(source=source, proposer=label, tokens=tokens, cost_usd=cost_usd))
        return proposals

    def candidate_source(self, answer: str, context: PromptContext, truncated: bool = False) -> str:
        """Returns candidate module source from an answer (see `engine.proposers.parsing`).

        Raises:
            CompletionParseError: when the answer holds no usable code.
        """
        function_name, version = context.function_name, context.next_version
        header = prompt_header(context.text, function_name, version)
        best = context.shots[-1].source if context.shots else ""
        shown = [shot.source for shot in context.shots]
        source, diff_problem = None, ""
        if self.edit_format == "diff" and best and "SEARCH" in answer:
            source, diff_problem = self._apply_diff(answer, best, context)
        if source is None:
            try:
                source = extract_candidate(answer, function_name, version, header, truncated, shown=shown)
            except CompletionParseError as error:
                if diff_problem:
                    raise CompletionParseError(f"{diff_problem}; read as a rewrite: {error}") from None
                raise
        return add_missing_definitions(source, best, function_name) if best else source

    def _apply_diff(self, answer: str, best: str, context: PromptContext) -> tuple[str | None, str]:
        """Returns the best shot edited by the answer's blocks, or None and why they do not apply."""
        function_name = context.function_name
        shown = f"{function_name}_v{context.next_version - 1}"
        # The prompt shows the best shot as `{name}_v{next - 1}`, so SEARCH blocks may quote either name.
        problem = ""
        for original in (rename_function(best, function_name, shown), best):
            try:
                edited = apply_search_replace(original, answer)
                return extract_candidate(edited, function_name, context.next_version), ""
            except CompletionParseError as error:
                problem = problem or f"the SEARCH/REPLACE edit does not apply: {error}"
        return None, problem


def build_llm_proposer(config: LLMConfig, environ: Mapping[str, str] | None = None) -> LLMProposer:
    """Returns the LLM proposer for an `llm:` config section, reading API keys from `environ` (os.environ).

    Raises:
        LLMAuthError: a model's key variable is unset and no base_url is configured.
    """
    return LLMProposer.from_config(config, environ)
