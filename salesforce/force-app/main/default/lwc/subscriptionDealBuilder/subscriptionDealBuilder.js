import { LightningElement, api, wire } from 'lwc';
import { createRecord, getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import { gql, graphql } from 'lightning/graphql';
import { NavigationMixin } from 'lightning/navigation';
import { CloseActionScreenEvent } from 'lightning/actions';
import { day, money, valueOf } from 'c/billsyncFormat';

const SUBSCRIPTION_FIELDS = [
    'Billsync_Subscription__c.Name',
    'Billsync_Subscription__c.Account__c',
    'Billsync_Subscription__c.Status__c',
    'Billsync_Subscription__c.Ends_On__c',
    'Billsync_Subscription__c.Term_End_Date__c',
    'Billsync_Subscription__c.Renewal_Date__c'
];
const OPTIONAL_FIELDS = ['Billsync_Subscription__c.CurrencyIsoCode'];
const ITEM_FIELDS = ['Product__c', 'Product_Code__c', 'Quantity__c', 'Contract_Price__c'].map(
    (f) => `Billsync_Subscription_Item__c.${f}`
);
const OPEN_STAGE = 'Prospecting';
const WORDS = { Amendment: 'Amend', Renewal: 'Renew', Cancellation: 'Cancel' };

function today() {
    return new Date().toISOString().slice(0, 10);
}

function dayAfter(iso) {
    const next = new Date(`${iso}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    return next.toISOString().slice(0, 10);
}

/**
 * Builds the Opportunity that changes a billsync subscription: its Type, the subscription it names in
 * Subscription_Reference__c and, for an amendment or a renewal, the subscription's current items as
 * its products (the rep then edits quantities or adds products). billsync applies it once it is won.
 */
export default class SubscriptionDealBuilder extends NavigationMixin(LightningElement) {
    @api recordId;
    @api dealType = 'Amendment';

    subscription;
    items;
    entries;
    error;
    working = false;

    @wire(getRecord, { recordId: '$recordId', fields: SUBSCRIPTION_FIELDS, optionalFields: OPTIONAL_FIELDS })
    wiredSubscription({ data, error }) {
        this.subscription = data;
        if (error) {
            this.error = 'This subscription cannot be read: ask an admin for the billsync sales permission set.';
        }
    }

    @wire(getRelatedListRecords, { parentRecordId: '$recordId', relatedListId: 'Items__r', fields: ITEM_FIELDS })
    wiredItems({ data }) {
        // An item an amendment removed stays on the subscription with quantity 0: not a current item.
        this.items = data ? data.records.filter((item) => Number(valueOf(item, 'Quantity__c')) > 0) : undefined;
    }

    // The standard price book's entries of the items' products, in the subscription's currency.
    @wire(graphql, { query: '$entryQuery', variables: '$entryVariables' })
    wiredEntries({ data, errors }) {
        if (data) {
            this.entries = data.uiapi.query.PricebookEntry.edges.map((edge) => edge.node);
        } else if (errors) {
            this.error = 'The price book cannot be read: ' + errors.map((e) => e.message).join('; ');
        }
    }

    get entryQuery() {
        if (!this.items || !this.items.length) {
            return undefined;
        }
        return gql`
            query entries($products: [ID], $currency: Picklist) {
                uiapi {
                    query {
                        PricebookEntry(
                            where: {
                                Product2Id: { in: $products }
                                CurrencyIsoCode: { eq: $currency }
                                IsActive: { eq: true }
                                Pricebook2: { IsStandard: { eq: true } }
                            }
                        ) {
                            edges { node { Id Product2Id { value } Pricebook2Id { value } UnitPrice { value } } }
                        }
                    }
                }
            }
        `;
    }

    get entryVariables() {
        return {
            products: (this.items || []).map((item) => valueOf(item, 'Product__c')),
            currency: this.currency
        };
    }

    get currency() {
        return valueOf(this.subscription, 'CurrencyIsoCode');
    }

    get name() {
        return valueOf(this.subscription, 'Name');
    }

    get withItems() {
        return this.dealType !== 'Cancellation';
    }

    get title() {
        return `${WORDS[this.dealType] || this.dealType} subscription ${this.name || ''}`.trim();
    }

    get buttonLabel() {
        return `Create the ${this.dealType} deal`;
    }

    // Why the deal cannot be built, in the rep's words; none when it can.
    get problem() {
        if (this.error) {
            return this.error;
        }
        if (!this.subscription) {
            return null;
        }
        if (valueOf(this.subscription, 'Status__c') === 'cancelled') {
            return `Subscription ${this.name} has ended: there is nothing to ${WORDS[this.dealType].toLowerCase()}. `
                + 'Sell a New Business deal instead.';
        }
        if (this.dealType === 'Cancellation' && valueOf(this.subscription, 'Status__c') === 'cancelling') {
            return `Subscription ${this.name} is already cancelled: it ends on ${day(valueOf(this.subscription, 'Ends_On__c'))}.`;
        }
        if (this.withItems && this.items && !this.items.length) {
            return `Subscription ${this.name} has no items billsync knows of yet: wait for its next sync.`;
        }
        if (this.withItems && this.entries) {
            const missing = this.items
                .filter((item) => !this.entryFor(item))
                .map((item) => valueOf(item, 'Product_Code__c'));
            if (missing.length) {
                return `No active standard price in ${this.currency} for ${missing.join(', ')}: `
                    + 'add it to the standard price book first.';
            }
        }
        return null;
    }

    get ready() {
        if (!this.subscription || this.problem) {
            return false;
        }
        return !this.withItems || Boolean(this.items && this.entries);
    }

    get disabled() {
        return !this.ready || this.working;
    }

    get lines() {
        return (this.items || []).map((item) => {
            const contract = valueOf(item, 'Contract_Price__c');
            return {
                id: item.id,
                code: valueOf(item, 'Product_Code__c'),
                quantity: valueOf(item, 'Quantity__c'),
                price: contract !== null ? `contract price ${money(contract, this.currency)}` : 'catalog price'
            };
        });
    }

    entryFor(item) {
        return (this.entries || []).find((entry) => entry.Product2Id.value === valueOf(item, 'Product__c'));
    }

    // The Opportunity's fields: the Type billsync reads, the subscription it changes, the dates.
    @api
    opportunityFields() {
        const termEnd = valueOf(this.subscription, 'Term_End_Date__c');
        const fields = {
            Name: `${this.dealType}: ${this.name}`,
            AccountId: valueOf(this.subscription, 'Account__c'),
            Type: this.dealType,
            Subscription_Reference__c: this.name,
            StageName: OPEN_STAGE,
            CloseDate: today()
        };
        if (this.currency) {
            fields.CurrencyIsoCode = this.currency;
        }
        if (this.dealType === 'Renewal') {
            const renewsOn = valueOf(this.subscription, 'Renewal_Date__c') || (termEnd ? dayAfter(termEnd) : null);
            if (renewsOn) {
                fields.Service_Start_Date__c = renewsOn;
            }
        } else if (this.dealType === 'Cancellation') {
            fields.Cancellation_Mode__c = 'end_of_term';
        } else {
            fields.Service_Start_Date__c = today();
        }
        if (this.withItems && this.entries && this.entries.length) {
            fields.Pricebook2Id = this.entries[0].Pricebook2Id.value;
        }
        return fields;
    }

    @api
    lineFields(opportunityId) {
        if (!this.withItems) {
            return [];
        }
        return this.items.map((item) => {
            const entry = this.entryFor(item);
            const contract = valueOf(item, 'Contract_Price__c');
            return {
                OpportunityId: opportunityId,
                PricebookEntryId: entry.Id,
                Quantity: valueOf(item, 'Quantity__c'),
                UnitPrice: contract !== null ? contract : entry.UnitPrice.value
            };
        });
    }

    async handleCreate() {
        if (this.disabled) {
            return;
        }
        this.working = true;
        this.error = undefined;
        try {
            const deal = await createRecord({ apiName: 'Opportunity', fields: this.opportunityFields() });
            for (const fields of this.lineFields(deal.id)) {
                // eslint-disable-next-line no-await-in-loop
                await createRecord({ apiName: 'OpportunityLineItem', fields });
            }
            this[NavigationMixin.Navigate]({
                type: 'standard__recordPage',
                attributes: { recordId: deal.id, objectApiName: 'Opportunity', actionName: 'view' }
            });
            this.dispatchEvent(new CloseActionScreenEvent());
        } catch (e) {
            const detail = e && e.body ? e.body.message || JSON.stringify(e.body) : String(e);
            this.error = `The deal was not created: ${detail}`;
        } finally {
            this.working = false;
        }
    }

    handleCancel() {
        this.dispatchEvent(new CloseActionScreenEvent());
    }
}
