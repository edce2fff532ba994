// Server-Sent Events over fetch (not EventSource): the request carries
// `X-EcoWatt-Activity: background`, so an open overview does not keep an idle session alive,
// and a 401 is seen (EventSource would retry it for ever).

export interface SseMessage {
  event: string
  data: string
}

/** Split a growing text buffer into complete SSE messages; returns them and the rest. */
export function parseSse(buffer: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = []
  const normalised = buffer.replace(/\r\n?/g, '\n')
  const blocks = normalised.split('\n\n')
  const rest = blocks.pop() ?? ''
  for (const block of blocks) {
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      let value = colon < 0 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
    }
    if (data.length || event !== 'message') messages.push({ event, data: data.join('\n') })
  }
  return { messages, rest }
}

export interface LiveConnection {
  close(): void
}

export interface LiveHandlers {
  onMessage(message: SseMessage): void
  onState?(state: 'connecting' | 'open' | 'closed'): void
  /** The session ended: stop reconnecting. */
  onUnauthorized?(): void
}

export function connectLive(path: string, handlers: LiveHandlers): LiveConnection {
  let stopped = false
  let controller: AbortController | null = null
  let delay = 1000

  async function once(): Promise<void> {
    controller = new AbortController()
    handlers.onState?.('connecting')
    const response = await fetch(path, {
      headers: { Accept: 'text/event-stream', 'X-EcoWatt-Activity': 'background' },
      credentials: 'same-origin',
      signal: controller.signal,
    })
    if (response.status === 401) {
      stopped = true
      handlers.onUnauthorized?.()
      return
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`)
    handlers.onState?.('open')
    delay = 1000
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const parsed = parseSse(buffer + value)
      buffer = parsed.rest
      parsed.messages.forEach(handlers.onMessage)
    }
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      try {
        await once()
      } catch (error) {
        if (stopped || (error as Error).name === 'AbortError') break
        delay = Math.min(delay * 2, 30_000)
      }
      if (stopped) break
      handlers.onState?.('closed')
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
    handlers.onState?.('closed')
  }

  void loop()
  return {
    close() {
      stopped = true
      controller?.abort()
    },
  }
}
