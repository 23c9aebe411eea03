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
