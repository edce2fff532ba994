// Links from an alarm or a finding to its raw frames: the page follows the server's link as
// given (path and query), lists what the archive answers, and downloads the window as text.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import ElementPlus from 'element-plus'
import * as Icons from '../src/icons'
import { i18n } from '../src/i18n'
import FramesLinks from '../src/components/FramesLinks.vue'
import { framesFilename, splitLink, type FramesLink } from '../src/utils/frames'

const LINK: FramesLink = {
  mn: '01000071CE00000000000001',
  point_ids: ['p-2', 'p-3'],
  from: '2026-11-20T01:30:00Z',
  to: '2026-11-20T04:00:00Z',
  url: '/api/ingest-hj212/archive/frames?mn=01000071CE00000000000001&data_from=2026-11-20T01%3A30%3A00Z&data_to=2026-11-20T04%3A00%3A00Z',
  text_url: '/api/ingest-hj212/archive/frames.txt?mn=01000071CE00000000000001&data_from=2026-11-20T01%3A30%3A00Z&data_to=2026-11-20T04%3A00%3A00Z&meta=true',
}
const FRAME = {
  frame_id: 'f-1',
  received_at: '2026-11-20T02:00:03Z',
  mn: LINK.mn,
  cn: '2011',
  data_time_utc: '2026-11-20T02:00:00Z',
  verdict: 'rejected',
  reason_code: 'crc_mismatch',
  reason: 'CRC 应为 1C80，收到 0000',
  size: 180,
  text: '##0180QN=20261120100000000;ST=22;CN=2011;MN=01000071CE00000000000001&&0000\r\n',
}

afterEach(() => {
  vi.unstubAllGlobals()
  document.body.innerHTML = ''
})

describe('frame links', () => {
  it('split into the path and the query the archive was given', () => {
    const { path, query } = splitLink(LINK.url)
    expect(path).toBe('/api/ingest-hj212/archive/frames')
    expect(query).toEqual({ mn: LINK.mn, data_from: '2026-11-20T01:30:00Z', data_to: '2026-11-20T04:00:00Z' })
    expect(splitLink('/x?mn=A&mn=B&meta=true').query).toEqual({ mn: ['A', 'B'], meta: 'true' })
    expect(splitLink('/x').query).toEqual({})
    expect(framesFilename(LINK)).toBe(`frames-${LINK.mn}-2026-11-20.txt`)
  })

  it('open one device’s frames from its button and download the window as text', async () => {
    const calls: string[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) => {
        calls.push(url)
        if (url.includes('frames.txt')) return new Response(FRAME.text, { headers: { 'content-type': 'text/plain' } })
        return Response.json({ items: [FRAME], total: 1, page: 1, page_size: 50, pages: 1 })
      }),
    )
    URL.createObjectURL = vi.fn(() => 'blob:frames')
    URL.revokeObjectURL = vi.fn()
    const wrapper = mount(FramesLinks, {
      props: { links: [LINK] },
      attachTo: document.body,
      global: { plugins: [i18n, ElementPlus], components: Icons },
    })
    const buttons = wrapper.findAll('[data-test="frames-link"]')
    expect(buttons).toHaveLength(1)
    expect(buttons[0].text()).toContain('原始报文')
    expect(buttons[0].text()).toContain(LINK.mn)
    expect(calls).toEqual([])

    await buttons[0].trigger('click')
    await flushPromises()
    expect(calls).toHaveLength(1)
    const listed = new URL(calls[0], 'http://gateway')
    expect(listed.pathname).toBe('/api/ingest-hj212/archive/frames')
    expect(listed.searchParams.get('mn')).toBe(LINK.mn)
    expect(listed.searchParams.get('data_from')).toBe('2026-11-20T01:30:00Z')
    expect(listed.searchParams.get('data_to')).toBe('2026-11-20T04:00:00Z')
    const dialog = document.body.querySelector('[data-test="frames-dialog"]')
    expect(dialog?.textContent).toContain('拒收')
    expect(dialog?.textContent).toContain('CRC 应为 1C80')
    expect(document.body.querySelector('[data-test="frame-text"]')?.textContent).toContain('CN=2011')

    const download = document.body.querySelector<HTMLButtonElement>('[data-test="frames-dialog"] [data-test="export"]')
    download?.click()
    await flushPromises()
    expect(calls).toHaveLength(2)
    const text = new URL(calls[1], 'http://gateway')
    expect(text.pathname).toBe('/api/ingest-hj212/archive/frames.txt')
    expect(text.searchParams.get('meta')).toBe('true')
    expect(text.searchParams.get('mn')).toBe(LINK.mn)
    wrapper.unmount()
  })

  it('say so when no device is behind the alarm or finding', () => {
    const wrapper = mount(FramesLinks, {
      props: { links: [], empty: 'nothing' },
      global: { plugins: [i18n, ElementPlus], components: Icons },
    })
    expect(wrapper.findAll('[data-test="frames-link"]')).toHaveLength(0)
    expect(wrapper.text()).toContain('nothing')
  })
})
