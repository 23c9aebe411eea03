import { createElement } from 'lwc';
import BillingOpportunityPanel from 'c/billingOpportunityPanel';
import { getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';

const record = (id, fields) => ({
    id,
    fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { value: v, displayValue: null }]))
});
const flush = () => Promise.resolve().then(() => Promise.resolve());
const text = (element, id) => element.shadowRoot.querySelector(`[data-id="${id}"]`)?.textContent.trim();
const TIERED = 'Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100';
const texts = (element, id) => [...element.shadowRoot.querySelectorAll(`[data-id="${id}"]`)].map((e) => e.textContent.trim());

// An open deal as billsync previews it: 12 graduated licences, the platform fee and 10 % support.
const PREVIEW_LINES = [
    { description: 'Licences (Jul 1 – Aug 1 2026)', quantity: '12', amount: '1950.00', currency: 'EUR', explanation: TIERED },
    { description: 'Platform fee (Jul 1 – Aug 1 2026)', quantity: '1', amount: '500.00', currency: 'EUR',
        explanation: 'Platform fee flat 500' },
    { description: 'Premium support (Jul 1 – Aug 1 2026)', quantity: '1950', amount: '195.00', currency: 'EUR',
        explanation: 'Premium support 10 % of 1950 (Licences)' }
];
const openDeal = (fields) => record('006000000000001AAA', {
    IsClosed: false, IsWon: false, CurrencyIsoCode: 'EUR', Billsync_Preview_Total__c: 3174,
    Billsync_Preview_MRR__c: 2645, Billsync_Preview_ARR__c: 31740,
    Billsync_Preview_Note__c: 'First invoice on 2026-07-01: 3,174.00 EUR (2,645.00 + tax 529.00).',
    Billsync_Previewed_At__c: '2026-06-20T09:30:00.000Z', Billing_Review_Flag__c: false, ...fields
});

async function mount() {
    const element = createElement('c-billing-opportunity-panel', { is: BillingOpportunityPanel });
    element.recordId = '006000000000001AAA';
    document.body.appendChild(element);
    await flush();
    return element;
}

afterEach(() => {
    while (document.body.firstChild) {
        document.body.removeChild(document.body.firstChild);
    }
});

describe('c-billing-opportunity-panel', () => {
    it('shows billsync\'s preview of an open deal', async () => {
        const element = await mount();
        getRecord.emit(record('006000000000001AAA', {
            IsClosed: false, IsWon: false, CurrencyIsoCode: 'EUR', Billsync_Preview_Total__c: 3174,
            Billsync_Preview_MRR__c: 2645, Billsync_Preview_ARR__c: 31740,
            Billsync_Preview_Note__c: 'First invoice on 2026-07-01: 3,174.00 EUR (2,645.00 + tax 529.00).',
            Billsync_Previewed_At__c: '2026-06-20T09:30:00.000Z', Billing_Review_Flag__c: false
        }));
        await flush();
        expect(text(element, 'total')).toBe('3,174.00 EUR');
        expect(text(element, 'mrr')).toBe('+2,645.00 EUR');
        expect(text(element, 'arr')).toBe('+31,740.00 EUR');
        expect(text(element, 'note')).toContain('First invoice on 2026-07-01');
        expect(element.shadowRoot.querySelector('[data-id="review"]')).toBeNull();
        expect(element.shadowRoot.querySelector('[data-id="subscription"]')).toBeNull();
    });

    it('lists an open deal\'s first invoice line by line, the graduated line with its tiers', async () => {
        const element = await mount();
        getRecord.emit(openDeal({ Billsync_Preview_Lines__c: JSON.stringify(PREVIEW_LINES) }));
        await flush();
        expect(text(element, 'total')).toBe('3,174.00 EUR');
        expect(text(element, 'mrr')).toBe('+2,645.00 EUR');
        expect(texts(element, 'preview-line-label')).toEqual([
            'Licences (Jul 1 – Aug 1 2026)', 'Platform fee (Jul 1 – Aug 1 2026)', 'Premium support (Jul 1 – Aug 1 2026)'
        ]);
        expect(texts(element, 'preview-line-amount')).toEqual(['1,950.00 EUR', '500.00 EUR', '195.00 EUR']);
        expect(texts(element, 'preview-line-explanation')[0]).toBe(TIERED);
        expect(texts(element, 'preview-line-explanation')[2]).toBe('Premium support 10 % of 1950 (Licences)');
        expect(element.shadowRoot.querySelector('[data-id="preview-lines-problem"]')).toBeNull();
        expect(element.shadowRoot.querySelector('[data-id="lines"]')).toBeNull(); // no won deal's invoice
    });

    it('shows the amounts billsync wrote to the last digit, never through a binary number', async () => {
        const element = await mount();
        getRecord.emit(openDeal({ CurrencyIsoCode: 'JPY', Billsync_Preview_Lines__c: JSON.stringify([
            { description: 'Seats', quantity: '1', amount: '1234567890123456789', currency: 'JPY', explanation: 'a' },
            { description: 'Credit for unused seats', quantity: '-2', amount: '-1500', explanation: 'b' }
        ]) }));
        await flush();
        expect(texts(element, 'preview-line-amount')).toEqual(['1,234,567,890,123,456,789 JPY', '-1,500 JPY']);
    });

    it('lists the lines billsync kept when the field was full, and the note says how many', async () => {
        const element = await mount();
        getRecord.emit(openDeal({
            Billsync_Preview_Lines__c: JSON.stringify(PREVIEW_LINES.slice(0, 2)),
            Billsync_Preview_Note__c: 'Only 2 of 3 lines listed (the lines field is full). First invoice on 2026-07-01: '
                + '3,174.00 EUR (2,645.00 + tax 529.00).'
        }));
        await flush();
        expect(texts(element, 'preview-line').length).toBe(2);
        expect(texts(element, 'preview-line-explanation')[0]).toBe(TIERED);
        expect(text(element, 'note')).toContain('Only 2 of 3 lines listed');
        expect(element.shadowRoot.querySelector('[data-id="preview-lines-problem"]')).toBeNull();
    });

    it('keeps the figures when the lines field is cut short or not billsync\'s list', async () => {
        const cut = JSON.stringify(PREVIEW_LINES).slice(0, 120);
        for (const broken of [cut, '{"description": "Licences"}', 'not json']) {
            const element = await mount();
            getRecord.emit(openDeal({ Billsync_Preview_Lines__c: broken }));
            await flush();
            expect(text(element, 'total')).toBe('3,174.00 EUR');
            expect(text(element, 'note')).toContain('First invoice on 2026-07-01');
            expect(element.shadowRoot.querySelector('[data-id="preview-lines"]')).toBeNull();
            expect(text(element, 'preview-lines-problem')).toBe(
                'The lines of this preview cannot be read; the total, MRR and ARR above are complete.');
            document.body.removeChild(element);
        }
    });

    it('leaves out a line whose amount is not a decimal string, and says so', async () => {
        const element = await mount();
        getRecord.emit(openDeal({ Billsync_Preview_Lines__c: JSON.stringify([
            PREVIEW_LINES[0], { ...PREVIEW_LINES[1], amount: 500 }, null, { ...PREVIEW_LINES[2], amount: '1e3' }
        ]) }));
        await flush();
        expect(texts(element, 'preview-line-label')).toEqual(['Licences (Jul 1 – Aug 1 2026)']);
        expect(text(element, 'preview-lines-problem')).toBe('3 lines of this preview cannot be shown.');
    });

    it('shows no line before billsync has previewed the deal', async () => {
        const element = await mount();
        getRecord.emit(record('006000000000001AAA', { IsClosed: false, IsWon: false, Billsync_Preview_Total__c: null }));
        await flush();
        expect(element.shadowRoot.querySelector('[data-id="total"]')).toBeNull();
        expect(element.shadowRoot.querySelector('[data-id="preview-lines"]')).toBeNull();
        expect(element.shadowRoot.querySelector('[data-id="preview-lines-problem"]')).toBeNull();
        expect(text(element, 'note')).toBe(
            'billsync has not previewed this deal yet: it does within one sync of a change to its products.');
    });

    it('says why an open deal has no preview', async () => {
        const element = await mount();
        getRecord.emit(record('006000000000001AAA', {
            IsClosed: false, IsWon: false, Billsync_Preview_Total__c: null,
            Billsync_Preview_Note__c: 'No billsync preview: ProductCode: is required but empty'
        }));
        await flush();
        expect(element.shadowRoot.querySelector('[data-id="total"]')).toBeNull();
        expect(text(element, 'note')).toBe('No billsync preview: ProductCode: is required but empty');
    });

    it('shows a won deal\'s subscription and the explanation of its first invoice\'s tiered line', async () => {
        const element = await mount();
        getRecord.emit(record('006000000000001AAA', {
            IsClosed: true, IsWon: true, CurrencyIsoCode: 'EUR', Billsync_Subscription_Id__c: 'sub-006000000000001AAA',
            Billsync_Subscription_Status__c: 'active', Billing_Review_Flag__c: false
        }));
        getRelatedListRecords.emit({ records: [record('a00000000000001AAA', {
            Name: 'INV-2026-000001', Issue_Date__c: '2026-07-01', Total__c: 3174, CurrencyIsoCode: 'EUR'
        })] }, (config) => config.relatedListId === 'Invoices__r');
        await flush();
        expect(getRelatedListRecords.getLastConfig().parentRecordId).toBe('a00000000000001AAA');
        getRelatedListRecords.emit({ records: [record('a01000000000001AAA', {
            Description__c: 'Licences', Amount__c: 1950, Explanation__c: TIERED
        })] }, (config) => config.relatedListId === 'Invoice_Lines__r');
        await flush();
        expect(text(element, 'subscription')).toBe('Active: subscription sub-006000000000001AAA');
        expect(text(element, 'first-invoice')).toBe('First invoice INV-2026-000001 of 2026-07-01: 3,174.00 EUR');
        expect(text(element, 'line')).toContain(TIERED);
        expect(element.shadowRoot.querySelector('[data-id="note"]')).toBeNull();
    });

    it('puts a flagged won deal\'s review in plain words', async () => {
        const element = await mount();
        getRecord.emit(record('006000000000001AAA', {
            IsClosed: true, IsWon: true, Billsync_Subscription_Id__c: 'sub-006000000000001AAA',
            Billsync_Subscription_Status__c: 'active', Billing_Review_Flag__c: true,
            Billing_Review_Reason__c: 'Edited after Closed Won (LIC quantity 10 → 15). billsync keeps billing '
                + 'sub-006000000000001AAA as won: record the change as an Amendment deal, or ask finance to re-apply it.'
        }));
        await flush();
        const review = text(element, 'review');
        expect(review).toContain('Finance must review this deal before billing changes.');
        expect(review).toContain('LIC quantity 10 → 15');
        expect(review).toContain('record the change as an Amendment deal');
    });
});
