"""Render a conversation into a prompt with the model's own chat template.

GGUF files carry the Hugging Face Jinja template under ``tokenizer.chat_template``.
We render it the way ``transformers`` does (sandboxed, ``trim_blocks`` and
``lstrip_blocks``, the same helper globals), so the prompt matches what the model
was trained on. Models without a template (base models, old conversions) get a
built-in fallback chosen by ``general.architecture``.

Templates are data from a downloaded file: they run in an immutable sandbox and
any failure becomes a ``GenerationError`` with a sentence, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NoReturn, cast

import jinja2
import jinja2.ext
import jinja2.sandbox

from engine.errors import GenerationError
from engine.inference.thinking import THINK_OPEN, prompt_opens_thinking, thinking_support
from engine.inference.tool_messages import (
    template_messages,
    template_supports_tools,
    with_tools_in_system,
)
from engine.types import ImagePart, Message, TextPart, ToolSpec

__all__ = [
    "TOOLS_KEY",
    "ChatTemplate",
    "PromptBuilder",
    "RenderedPrompt",
    "choose_template",
    "render",
    "render_conversation",
    "template_message",
]

# Gemma's official format: no system role, so the system text is folded into the
# first user turn; the assistant role is called "model".
_GEMMA = """\
{{- bos_token -}}
{%- if messages and messages[0].role == 'system' -%}
  {%- set first_user_prefix = messages[0].content + '\n\n' -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set first_user_prefix = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- set role = 'model' if message.role == 'assistant' else message.role -%}
  {{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') -}}
  {{- message.content | trim -}}
  {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<start_of_turn>model\n' -}}
{%- endif -%}
"""

# Llama 2 chat: the system prompt lives inside the first [INST] block.
_LLAMA2 = """\
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = '<<SYS>>\n' + messages[0].content + '\n<</SYS>>\n\n' -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'user' -%}
    {{- bos_token + '[INST] ' + (system if loop.first else '') -}}
    {{- message.content | trim + ' [/INST]' -}}
  {%- else -%}
    {{- ' ' + message.content | trim + ' ' + eos_token -}}
  {%- endif -%}
{%- endfor -%}
"""

_LLAMA3 = """\
{{- bos_token -}}
{%- for message in messages -%}
  {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' -}}
  {{- message.content | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"""

_CHATML = """\
{%- for message in messages -%}
  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

_FALLBACKS: dict[str, str] = {
    "gemma": _GEMMA,
    "llama2": _LLAMA2,
    "llama3": _LLAMA3,
    "chatml": _CHATML,
}

_GEMMA_ARCHES = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})
# llama.cpp's pre-tokenizer name for the Llama 3 family ("llama-bpe"); Llama 1/2
# use SentencePiece and have no pre-tokenizer or "default".
_LLAMA3_PRE = frozenset({"llama-bpe", "llama3"})


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A Jinja chat template and where it came from."""

    source: str  # "gguf" or "fallback:<name>"
    text: str


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    text: str
    source: str


def choose_template(
    gguf_template: str | None, architecture: str, *, tokenizer_pre: str = ""
) -> ChatTemplate:
    """The model's own template if it has one, else a fallback for its architecture.

    ``tokenizer_pre`` (GGUF ``tokenizer.ggml.pre``) tells Llama 3 from Llama 2,
    which share ``general.architecture = llama``.
    """
    if gguf_template and gguf_template.strip():
        return ChatTemplate("gguf", gguf_template)
    arch = architecture.lower()
    if arch in _GEMMA_ARCHES:
        name = "gemma"
    elif arch == "llama":
        name = "llama3" if tokenizer_pre.lower() in _LLAMA3_PRE else "llama2"
    else:
        name = "chatml"
    return ChatTemplate(f"fallback:{name}", _FALLBACKS[name])


# Where an image sits in a rendered prompt (engine.inference.vision fills it): the
# object replacement character, removed from typed text so that only images make it.
IMAGE_MARKER = "\ufffc"


def with_images_as_text(message: Message, image_marker: str | None) -> Message:
    """``message`` with its images as text the template can carry (issue 13), before
    its words: ``image_marker`` each, which the vision projector fills; for a model
    without one (``None``), "[Image: name]" (an earlier image, after a switch to a
    model that cannot see). Typed text never carries the marker."""
    images = message.images
    if not images and not any(
        isinstance(p, TextPart) and IMAGE_MARKER in p.text for p in message.parts
    ):
        return message
    if image_marker is not None:
        lead = image_marker * len(images)
    else:
        lead = "".join(f"[Image: {i.name or 'pasted image'}]\n" for i in images)
    rest = [
        TextPart(p.text.replace(IMAGE_MARKER, "")) if isinstance(p, TextPart) else p
        for p in message.parts
        if not isinstance(p, ImagePart)
    ]
    return Message(message.role, (TextPart(lead), *rest) if lead else rest, message.thinking)


def template_message(message: Message) -> dict[str, object]:
    """One message as a chat template reads it: the one place where a message's
    parts become template content.

    Text parts are joined into ``content``. Parts a text-only template cannot
    show (images, documents) are to be turned into what the model reads here too:
    a placeholder the vision projector fills, or a document's text. A reply that
    called tools is several entries: see ``engine.inference.tool_messages``.
    """
    return template_messages(message, native=True)[0]


def render(
    template: ChatTemplate,
    conversation: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    extra: Mapping[str, object] | None = None,
    tools: Sequence[ToolSpec] = (),
    image_marker: str | None = None,
) -> str:
    """Render ``conversation`` with ``template``; ``extra`` reaches the template as
    variables (e.g. ``enable_thinking``) but cannot override the standard ones.
    ``tools``: what the model may call, rendered by the template when it can, else
    described in the system message. ``image_marker``: see ``with_images_as_text``."""
    native = template_supports_tools(template.text)
    conversation = [with_images_as_text(m, image_marker) for m in conversation]
    messages = [d for m in conversation for d in template_messages(m, native=native)]
    variables: dict[str, object] = dict(extra or {})
    if tools and native:
        variables["tools"] = [t.for_template() for t in tools]
    elif tools:
        messages = with_tools_in_system(messages, tools)
    variables.update(
        messages=messages,
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )
    try:
        compiled = _compile(template.text)
    except jinja2.TemplateSyntaxError as exc:
        raise GenerationError(
            "This model's chat template is broken, so Hearth cannot build a prompt for it. "
            "Try another download of the model.",
            detail=f"{template.source} template, line {exc.lineno}: {exc.message}",
        ) from exc
    try:
        return compiled.render(**variables)
    except _TemplateRejected as exc:
        raise GenerationError(
            f"The model's chat template rejected this conversation: {exc.reason}",
            detail=template.source,
        ) from exc
    # The template is code from a downloaded file: whatever it raises (TypeError on
    # None + str, SecurityError, UndefinedError...) is the file's fault, not ours.
    except Exception as exc:
        raise GenerationError(
            "The model's chat template failed on this conversation. "
            "Try another download of the model or start a new chat.",
            detail=f"{template.source} template: {type(exc).__name__}: {exc}",
        ) from exc


def render_conversation(
    conversation: Sequence[Message],
    *,
    gguf_template: str | None,
    architecture: str,
    tokenizer_pre: str = "",
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    extra: Mapping[str, object] | None = None,
) -> RenderedPrompt:
    """Choose a template and render in one call."""
    template = choose_template(gguf_template, architecture, tokenizer_pre=tokenizer_pre)
    text = render(
        template,
        conversation,
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
        extra=extra,
    )
    return RenderedPrompt(text, template.source)


class PromptBuilder:
    """A model's conversation -> prompt text -> tokens, with its thinking switch.

    ``enable_thinking`` is always passed explicitly (the model's default unless
    the chat says otherwise): a template's "undefined" is not the model's intent.
    ``tokenize(text, add_bos)`` is the model's tokenizer with special tokens parsed.
    """

    def __init__(
        self,
        template: ChatTemplate,
        *,
        bos_token: str,
        eos_token: str,
        add_bos: bool,
        tokenize: Callable[[str, bool], list[int]],
    ) -> None:
        self.template = template
        self.image_marker: str | None = None  # set when a vision projector is loaded
        self._bos, self._eos, self._add_bos = bos_token, eos_token, add_bos
        self._tokenize = tokenize
        self.supports_thinking, self.thinking_default = thinking_support(
            template.text, lambda extra: self.render([Message("user", "Hi")], extra)
        )

    def variables(
        self, thinking: bool | None, extra: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        variables: dict[str, object] = {"enable_thinking": self.thinking_default}
        variables.update(extra or {})
        if thinking is not None:
            variables["enable_thinking"] = thinking
        return variables

    def render(self, conversation: Sequence[Message], variables: Mapping[str, object]) -> str:
        """``variables`` may carry ``TOOLS_KEY``: the ``ToolSpec``s the model may call."""
        extra = dict(variables)
        tools = extra.pop(TOOLS_KEY, ())
        return render(
            self.template,
            conversation,
            bos_token=self._bos,
            eos_token=self._eos,
            add_generation_prompt=True,
            extra=extra,
            tools=cast(Sequence[ToolSpec], tools),
            image_marker=self.image_marker,
        )

    def render_continuation(
        self, conversation: Sequence[Message], variables: Mapping[str, object]
    ) -> tuple[str, bool]:
        """The prompt that makes the model carry on the last (assistant) message.

        Returns (text, inside_thinking). The partial reply stays *open*: no
        end-of-turn after it. As transformers' ``continue_final_message`` does, the
        conversation is rendered with the partial reply in it and cut right after
        its text, so the template decides how the turn looks (Qwen3.5 writes the
        reply's thinking in a closed think block before the answer). A reply cut
        inside its thinking (no answer yet) is cut after the thinking, leaving the
        block open; a template that does not render thinking gets the generation
        prompt, an opened ``<think>`` if it did not open one, and the thinking.
        """
        *before, partial = conversation
        if partial.role != "assistant":
            raise ValueError("only an assistant message can be continued")
        if partial.content:
            text = self.render(conversation, variables)
            shown = partial.content.strip()
            end = text.rfind(shown) if shown else -1
            if end < 0:
                raise GenerationError(
                    "This model's chat template cannot continue a reply. Use Regenerate instead.",
                    detail=f"{self.template.source}: the partial reply is not in the prompt",
                )
            # Templates trim; the model should see the reply exactly as it was written.
            trailing = partial.content[len(partial.content.rstrip()) :]
            return text[: end + len(shown)] + trailing, False
        thinking = partial.thinking.strip()
        if not thinking:  # nothing written yet: an ordinary reply
            return self.render(before, variables), False
        probe = [*before, Message("assistant", _SENTINEL, thinking=partial.thinking)]
        text = self.render(probe, variables)
        cut = text.rfind(thinking, 0, max(0, text.rfind(_SENTINEL)))
        if cut >= 0:
            return text[: cut + len(thinking)], True
        base = self.render(before, {**variables, "enable_thinking": True})
        opener = "" if prompt_opens_thinking(base) else THINK_OPEN + "\n"
        return base + opener + thinking, True

    def tokenize(self, text: str) -> list[int]:
        """BOS added only when the model wants one and the template did not write it."""
        add_bos = self._add_bos and not (self._bos and text.startswith(self._bos))
        return self._tokenize(text, add_bos)

    def tokens(self, conversation: Sequence[Message], variables: Mapping[str, object]) -> list[int]:
        return self.tokenize(self.render(conversation, variables))

    def single_token(self, text: str) -> int | None:
        """The id of ``text`` if the vocabulary has it as one token."""
        ids = self._tokenize(text, False)
        return ids[0] if len(ids) == 1 else None


# The key under which PromptBuilder's variables carry the tools (not a template variable).
TOOLS_KEY = "\x00tools"

# Stand-in answer text for locating where a template writes a reply's thinking.
_SENTINEL = "\x07"


class _TemplateRejected(jinja2.TemplateError):
    """Raised by ``raise_exception()`` inside a template."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _raise_exception(message: str) -> NoReturn:
    raise _TemplateRejected(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: object,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson HTML-escapes <, > and &, which corrupts tool schemas in
    # the prompt; transformers overrides it the same way.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _make_environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = _make_environment()


@lru_cache(maxsize=16)
def _compile(text: str) -> jinja2.Template:
    # Compiling a large template takes milliseconds; a chat renders it every turn.
    return _ENV.from_string(text)
