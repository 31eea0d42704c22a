"""Each turn's prompt, rendered and tokenized once (``ChatSession``'s prompt side).

``TurnPrompts`` turns a conversation into the tokens the model reads: the chat
template's text, its images (each image marker becomes the image's run of
positions, ``engine.inference.vision``), and, for the next round of a reply that
called tools, the tokens the model generated, as it generated them. The context
check and the reply that follows it (the worker's order) share one prepared
prompt. Split from ``session.py``, which owns the model, the context and the
token loop; this side never decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.inference.chat_template import TOOLS_KEY, PromptBuilder
from engine.inference.thinking import prompt_opens_thinking
from engine.inference.vision import (
    PreparedImage,
    Projector,
    cells,
    prompt_tokens,
    refuse_images,
)
from engine.types import Message, ToolSpec

__all__ = ["TurnPrompt", "TurnPrompts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnPrompt:
    """One turn's prompt, as ``stream`` and ``context_usage`` need it."""

    tokens: list[int]
    text: str
    in_thinking: bool  # the prompt ends inside an open thinking block
    resumed: bool  # it continues a cut-off reply that already has text
    before: tuple[Message, ...]  # the messages the checkpoint marks are about
    variables: Mapping[str, object]  # the template's variables (enable_thinking)
    images: Mapping[int, PreparedImage]  # by the position where each image's run starts
    cells: int  # context cells it takes (an image may have more embeddings than positions)


class TurnPrompts:
    """Renders and tokenizes prompts for one loaded model.

    ``tokenize_rest`` tokenizes text that does not start the prompt (no BOS);
    ``detokenize`` turns generated tokens back into bytes (special tokens written);
    ``name`` is the model's, for the sentence when it cannot see an image.
    """

    def __init__(
        self,
        prompts: PromptBuilder,
        *,
        tokenize_rest: Callable[[str], list[int]],
        detokenize: Callable[[list[int]], bytes],
        name: str,
        projector: Projector | None = None,
    ) -> None:
        self.prompts = prompts
        self.projector = projector
        self._rest = tokenize_rest
        self._detokenize = detokenize
        self._name = name
        self._prepared: tuple[tuple[object, ...], TurnPrompt] | None = None
        # The last reply's prompt text plus what it generated, and their tokens.
        self._last_reply: tuple[str, list[int]] | None = None

    def tokens(
        self, text: str, conversation: Sequence[Message]
    ) -> tuple[list[int], dict[int, PreparedImage]]:
        """A rendered prompt's tokens, and its images by where their runs start."""
        return prompt_tokens(text, conversation, self.projector, self.prompts.tokenize, self._rest)

    def conversation_tokens(
        self, conversation: Sequence[Message], variables: Mapping[str, object]
    ) -> tuple[list[int], dict[int, PreparedImage]]:
        return self.tokens(self.prompts.render(conversation, variables), conversation)

    def variables(self, thinking: bool | None, tools: Sequence[ToolSpec]) -> dict[str, object]:
        return self.prompts.variables(thinking, {TOOLS_KEY: tuple(tools)} if tools else None)

    def prepare(
        self,
        conversation: Sequence[Message],
        thinking: bool | None,
        continue_reply: bool,
        tools: Sequence[ToolSpec] = (),
    ) -> TurnPrompt:
        """The prompt of this turn, rendered and tokenized once: the context check
        and the reply that follows it share it."""
        key = (tuple(conversation), thinking, continue_reply, tuple(tools))
        if self._prepared is not None and self._prepared[0] == key:
            return self._prepared[1]
        prompts = self.prompts
        variables = self.variables(thinking, tools)
        resumed = False
        if self.projector is None and conversation and conversation[-1].images:
            raise refuse_images(self._name)
        if continue_reply and conversation and conversation[-1].role == "assistant":
            text, in_thinking = prompts.render_continuation(conversation, variables)
            resumed = bool(conversation[-1].content or conversation[-1].thinking.strip())
            conversation = conversation[:-1]  # what the checkpoint marks are about
        else:
            text = prompts.render(conversation, variables)
            in_thinking = prompt_opens_thinking(text)
        tokens, images = self.tokens(text, conversation)
        if not images:  # (a reply that called tools: its own tokens, as generated)
            tokens = self._spliced(text) or tokens
        prompt = TurnPrompt(
            tokens=tokens,
            text=text,
            in_thinking=in_thinking,
            resumed=resumed,
            before=tuple(conversation),
            variables=variables,
            images=images,
            cells=cells(len(tokens), images),
        )
        self._prepared = (key, prompt)
        return prompt

    def _spliced(self, text: str) -> list[int] | None:
        """The tokens of ``text`` when it extends the last reply (the next round of a
        reply that called tools): the tokens the model generated, as it generated
        them, then the new text's. Re-tokenizing the whole text can split the
        generated part differently, and a hybrid model's state cannot go back to
        where the two part: the round would re-read the reply from a checkpoint."""
        last = self._last_reply
        if last is None or not last[0] or not text.startswith(last[0]):
            return None
        return last[1] + self._rest(text[len(last[0]) :])

    def remember_reply(self, prompt: TurnPrompt, generated: list[int]) -> None:
        """The reply to ``prompt`` ended with ``generated``: its next round may splice."""
        try:
            text = self._detokenize(generated).decode("utf-8")
        except UnicodeDecodeError:  # cut inside a character: no splice next time
            self._last_reply = None
            return
        self._last_reply = (prompt.text + text, [*prompt.tokens, *generated])

    def forget_reply(self) -> None:
        self._last_reply = None

    def forget_prepared(self) -> None:
        """Render the next prompt afresh (a benchmark's rounds, a closed session)."""
        self._prepared = None
